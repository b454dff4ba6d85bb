"""A password that can travel on the command wire but never shows up anywhere else."""

from __future__ import annotations

from typing import Any, Final

REDACTED: Final = "***"


class Secret:
    """Wraps a secret string; ``repr``/``str``/``format`` give ``'***'``.

    Only ``reveal()`` gives the value back, so every accidental path (logging, f-strings,
    exception messages, ``repr`` of the command holding it) shows the placeholder.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret wraps a str")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"'{REDACTED}'"

    def __str__(self) -> str:
        return REDACTED

    def __format__(self, format_spec: str) -> str:
        return format(REDACTED, format_spec)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            return self._value == other._value
        return NotImplemented

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __len__(self) -> int:
        return len(self._value)

    def __reduce__(self) -> Any:
        # Pickling would be one more way to move the value around unnoticed.
        raise TypeError("Secret values cannot be pickled")
