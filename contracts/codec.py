"""Bytes <-> commands: one typed error listing every problem, and the wire encoding."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any, Final

import msgspec

from contracts.commands import COMMAND_TYPES, Command, CommandBase
from contracts.secret import Secret
from contracts.validation import TAG_FIELD, Problem, known_command_type, validate_fields

# Best-effort context copied into an InvalidCommand is bounded: it lands in events and logs.
CONTEXT_MAX_LENGTH: Final = 255
# The largest command body decoded at all; a larger one is rejected unread. Far above any
# real command (the biggest is a CreateCustomer of a few KiB) and far below the broker's
# max_message_size, so the rejection and its dead-letter copy always fit.
MAX_BODY_BYTES: Final = 1024 * 1024
# A rejection names this many problems and counts the rest: its event and dead-letter
# header stay small however many items of a list are wrong.
MAX_LISTED_PROBLEMS: Final = 20
PROBLEM_MAX_CHARS: Final = 200  # a path names any unknown field a publisher sent, however long


def _shortened(text: str) -> str:
    return text if len(text) <= PROBLEM_MAX_CHARS else text[: PROBLEM_MAX_CHARS - 3] + "..."


class InvalidCommand(Exception):  # noqa: N818 - the name is the contract (architecture.md)
    """Not a valid command. ``problems`` lists every one; no API call may be made.

    ``command_type``, ``idempotency_key`` and ``customer`` are read, best effort, from
    whatever JSON object there was, for the ``CommandRejected`` event.
    """

    def __init__(
        self,
        problems: list[Problem],
        *,
        command_type: str | None = None,
        idempotency_key: str | None = None,
        customer: str | None = None,
    ) -> None:
        self.problems = problems
        self.command_type = command_type
        self.idempotency_key = idempotency_key
        self.customer = customer
        super().__init__(self.describe())

    def describe(self) -> str:
        shown = self.problems[:MAX_LISTED_PROBLEMS]
        listed = "; ".join(_shortened(str(problem)) for problem in shown)
        more = len(self.problems) - MAX_LISTED_PROBLEMS
        if more > 0:
            listed += f"; and {more} more"
        return f"invalid command ({len(self.problems)} problem(s)): {listed}"

    def __str__(self) -> str:
        return self.describe()


def _reveal(obj: Any) -> Any:
    if isinstance(obj, Secret):
        return obj.reveal()
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


def _wrap_secret(cls: type, obj: Any) -> Any:
    if cls is Secret and isinstance(obj, str):
        return Secret(obj)
    raise NotImplementedError(f"cannot decode {cls.__name__}")


_GENERIC_DECODER: Final = msgspec.json.Decoder()
_COMMAND_DECODER: Final[msgspec.json.Decoder[Command]] = msgspec.json.Decoder(
    Command, dec_hook=_wrap_secret
)
_COMMAND_ENCODER: Final = msgspec.json.Encoder(enc_hook=_reveal)
_CANONICAL_ENCODER: Final = msgspec.json.Encoder(enc_hook=_reveal, order="sorted")


def _bounded_str(value: object) -> str | None:
    return value[:CONTEXT_MAX_LENGTH] if isinstance(value, str) else None


def _context(obj: Mapping[str, Any]) -> dict[str, str | None]:
    tag = obj.get(TAG_FIELD)
    customer_field = "username" if tag in ("CreateCustomer", "ListCustomers") else "customer"
    return {
        "command_type": _bounded_str(tag),
        "idempotency_key": _bounded_str(obj.get("idempotency_key")),
        "customer": _bounded_str(obj.get(customer_field)),
    }


def _type_problem(obj: Mapping[str, Any]) -> Problem:
    if TAG_FIELD not in obj:
        return Problem("$.type", "required field is missing")
    return Problem("$.type", "unknown command type; expected one of " + ", ".join(COMMAND_TYPES))


def body_size_problem(size: int, max_bytes: int = MAX_BODY_BYTES) -> Problem | None:
    if size > max_bytes:
        return Problem("$", f"body has {size} bytes; at most {max_bytes} are accepted")
    return None


def decode_command(
    data: bytes | bytearray | memoryview | str,
    *,
    today: date | None = None,
    max_bytes: int = MAX_BODY_BYTES,
) -> Command:
    """Decode and validate a command body, or raise ``InvalidCommand`` listing every problem.

    ``today`` (UTC by default) anchors the billing_date window. A body over ``max_bytes``
    is rejected before it is decoded.
    """
    size = len(data.encode()) if isinstance(data, str) else len(data)
    too_big = body_size_problem(size, max_bytes)
    if too_big is not None:
        raise InvalidCommand([too_big])
    try:
        obj = _GENERIC_DECODER.decode(data)
    except msgspec.DecodeError:
        raise InvalidCommand([Problem("$", "body is not valid UTF-8 JSON")]) from None
    except RecursionError:
        raise InvalidCommand([Problem("$", "body is nested too deeply")]) from None
    if not isinstance(obj, dict):
        raise InvalidCommand([Problem("$", "a command must be a JSON object")])
    context = _context(obj)
    cls = known_command_type(obj)
    if cls is None:
        raise InvalidCommand([_type_problem(obj)], **context)
    problems = validate_fields(cls, obj, today or datetime.now(UTC).date())
    if problems:
        raise InvalidCommand(problems, **context)
    try:
        return _COMMAND_DECODER.decode(data)
    except msgspec.ValidationError as exc:
        # A safety net: validate_fields mirrors every constraint msgspec enforces.
        raise InvalidCommand([Problem("$", str(exc))], **context) from None


def encode_command(cmd: CommandBase) -> bytes:
    """The wire form, secrets revealed: only for publishing the command itself."""
    return _COMMAND_ENCODER.encode(cmd)


def fingerprint_material(cmd: CommandBase) -> bytes:
    """Canonical bytes of the whole command minus ``idempotency_key`` (secrets included):
    the input of the store's HMAC fingerprint, equal for equal payloads."""
    fields = msgspec.to_builtins(cmd, enc_hook=_reveal)
    fields.pop("idempotency_key", None)
    return _CANONICAL_ENCODER.encode(fields)
