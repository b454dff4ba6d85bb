"""How dead letters look to an operator: the table, one message in full, replay progress.

Nothing here prints a body except through ``redacted_body`` (passwords and API keys
masked, even when the body is not valid JSON); headers go through ``redacted_headers``.
``dlq show --raw`` is the one deliberate exception, guarded in the CLI.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TextIO

from worker.broker import headers as h
from worker.observability.redact import MASK, redact_mapping, redact_text
from worker.ops.dlq_read import DeadLetter

CELL_MAX_CHARS = 36
PROGRESS_EVERY_MESSAGES = 100  # progress lines when stderr is not a terminal
READ_PROGRESS_EVERY_MESSAGES = 1000  # reading is quicker than replaying: fewer lines
COLUMNS = (
    ("#", "position"),
    ("TYPE", "command_type"),
    ("CUSTOMER", "customer"),
    ("KEY", "idempotency_key"),
    ("REASON", "reason"),
    ("CODE", "error_code"),
    ("ATTEMPTS", "attempts"),
    ("LAST FAILURE", "last_failure"),
)
PROPERTY_NAMES = (
    "message_id",
    "correlation_id",
    "reply_to",
    "content_type",
    "content_encoding",
    "delivery_mode",
    "timestamp",
    "type",
    "app_id",
)


BODY_SECRET_KEYS = (
    "password",
    "new_password",
    "confirm_password",
    "credential_password",
    "new_credential_password",
    "api_key",
    "apikey",
    "key",
)
# Catches a secret value even in a truncated or otherwise broken JSON body.
_BROKEN_JSON_SECRET = re.compile(
    r"(?P<head>\"(?:" + "|".join(BODY_SECRET_KEYS) + r")\"\s*:\s*\")(?P<value>(?:[^\"\\]|\\.)*)",
    re.IGNORECASE,
)


def redacted_body(message: DeadLetter) -> str:
    """The body for a human: JSON with secrets masked, or masked text when not JSON."""
    if message.command is not None:
        return json.dumps(redact_mapping(dict(message.command)), indent=2, sort_keys=True)
    text = message.body.decode("utf-8", "replace")
    return redact_text(_BROKEN_JSON_SECRET.sub(rf"\g<head>{MASK}", text))


def redacted_headers(message: DeadLetter) -> dict[str, Any]:
    return redact_mapping({k: _plain(v) for k, v in message.headers.items()})  # type: ignore[no-any-return]


def _plain(value: Any) -> Any:
    """Header values as JSON-friendly data (the broker's x-death has datetimes and bytes)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, datetime):
        return h.iso_utc(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _cell(value: Any) -> str:
    text = "-" if value is None or value == "" else str(value)
    return text if len(text) <= CELL_MAX_CHARS else text[: CELL_MAX_CHARS - 1] + "…"


def render_table(messages: Sequence[DeadLetter]) -> str:
    rows = [[_cell(m.summary()[key]) for _, key in COLUMNS] for m in messages]
    header = [title for title, _ in COLUMNS]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]]
    return "\n".join(line.rstrip() for line in lines)


def render_json(queue: str, messages: Sequence[DeadLetter], total: int) -> str:
    return json.dumps(
        {
            "queue": queue,
            "total": total,
            "matched": len(messages),
            "messages": [m.summary() for m in messages],
        },
        indent=2,
    )


def detail(message: DeadLetter) -> dict[str, Any]:
    """Everything about one message, secrets masked."""
    properties = {name: getattr(message.properties, name, None) for name in PROPERTY_NAMES}
    return {
        **message.summary(),
        "delivery_routing_key": message.routing_key,
        "properties": properties,
        "headers": redacted_headers(message),
        "body": redacted_body(message),
    }


def render_detail(message: DeadLetter) -> str:
    info = detail(message)
    body = info.pop("body")
    headers = info.pop("headers")
    properties = info.pop("properties")
    lines = [f"{key}: {value}" for key, value in info.items()]
    lines += ["properties:"] + [f"  {k}: {v}" for k, v in properties.items() if v is not None]
    lines += ["headers:"] + [f"  {k}: {json.dumps(v, default=str)}" for k, v in headers.items()]
    lines += ["body (secrets masked):", body]
    return "\n".join(lines)


def find(messages: Sequence[DeadLetter], target: str) -> DeadLetter | None:
    """By position (``3``), else by idempotency key, else by message id."""
    if target.isdigit():
        position = int(target)
        return next((m for m in messages if m.position == position), None)
    for message in messages:
        if target in (message.idempotency_key, message.message_id):
            return message
    return None


def may_be(target: str) -> Callable[[DeadLetter], bool]:
    """A reader's ``keep`` for ``find``: only the messages ``target`` could name."""
    if target.isdigit():
        position = int(target)
        return lambda m: m.position == position
    return lambda m: target in (m.idempotency_key, m.message_id)


class ProgressReporter:
    """A rewriting line on a terminal; a line every ``every`` messages otherwise."""

    def __init__(self, stream: TextIO, verb: str, every: int = PROGRESS_EVERY_MESSAGES) -> None:
        self._stream = stream
        self._verb = verb
        self._every = every
        self._tty = stream.isatty()
        self._last_reported = 0

    def __call__(self, done: int, total: int) -> None:
        if self._tty:
            width = 30
            filled = width * done // max(1, total)
            bar = "#" * filled + "." * (width - filled)
            self._stream.write(f"\r{self._verb} [{bar}] {done}/{total}")
            if done >= total:
                self._stream.write("\n")
        elif done - self._last_reported >= self._every or done >= total:
            self._stream.write(f"{self._verb} {done}/{total}\n")
            self._last_reported = done
        self._stream.flush()
