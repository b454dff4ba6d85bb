"""Logging set-up: one JSON object per line (or text for humans), secrets always scrubbed.

- ``configure_logging(fmt="json", level="INFO", stream=None)``: replaces the root handlers with
  one stream handler (``sys.stderr`` by default, so commands that print data keep stdout clean).
- Structured fields: ``log.info("msg", extra=log_fields(key=value, ...))`` (the same as
  ``extra={"fields": {...}}``). JSON lines carry ``ts`` (UTC ISO-8601), ``level``, ``logger``,
  ``message``, ``thread``, every field, and for exceptions ``exc_type``/``exc_message``/
  ``traceback``.
- ``log_command_outcome(logger, *, command_type, idempotency_key, correlation_id, customer,
  attempt, outcome, error_code, duration_s)``: the one line per command outcome.

Every message, exception text and string field passes through ``redact.redact_text`` (and
fields through ``redact_mapping``) before it is written.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any

import msgspec

from worker.observability import tracing
from worker.observability.redact import redact_mapping, redact_text

FORMATS = ("json", "text")
FIELDS_ATTR = "fields"
# Libraries whose INFO lines are noise next to the worker's own life-cycle lines.
QUIET_LOGGERS = ("pika", "urllib3")
_HANDLER_MARK = "_provisioner_handler"
_REDACTED_ATTR = "_provisioner_redacted"  # set by RedactingFilter: the message is scrubbed
# Anything JSON has no type for is written as its str(), as json.dumps(default=str) would.
_ENCODER = msgspec.json.Encoder(enc_hook=str)


def log_fields(**fields: Any) -> dict[str, Any]:
    """``extra=`` argument carrying structured fields into the log line."""
    return {FIELDS_ATTR: fields}


def _record_fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, FIELDS_ATTR, None)
    found = dict(redact_mapping(fields)) if isinstance(fields, Mapping) else {}
    return {**found, **tracing.current_ids()}  # trace_id, span_id inside a traced command


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class RedactingFilter(logging.Filter):
    """Renders the message with its arguments and scrubs it, for every handler downstream."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact_text(record.getMessage())
        record.args = None
        setattr(record, _REDACTED_ATTR, True)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": _scrubbed_message(record),
            "thread": record.threadName,
        }
        for key, value in _record_fields(record).items():
            line.setdefault(key, value)
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            line["exc_type"] = type(exc).__name__
            line["exc_message"] = redact_text(str(exc))
            line["traceback"] = redact_text("".join(traceback.format_exception(exc)))
        return _ENCODER.encode(line).decode()


def _scrubbed_message(record: logging.LogRecord) -> str:
    message = record.getMessage()
    return message if getattr(record, _REDACTED_ATTR, False) else redact_text(message)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = _record_fields(record)
        if fields:
            pairs = " ".join(f"{key}={value}" for key, value in fields.items())
            first, newline, rest = text.partition("\n")
            text = f"{first} [{pairs}]{newline}{rest}"
        return redact_text(text)


def configure_logging(
    fmt: str = "json", level: str = "INFO", stream: IO[str] | None = None
) -> None:
    """Route every logger to one scrubbed handler in ``fmt`` (``json`` or ``text``)."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactingFilter())
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        if getattr(old, _HANDLER_MARK, False):
            old.close()
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def _outcome_level(outcome: str) -> int:
    if outcome.startswith(("failed", "rejected", "error")):
        return logging.WARNING
    return logging.INFO


def log_command_outcome(
    logger: logging.Logger,
    *,
    command_type: str | None,
    idempotency_key: str | None,
    correlation_id: str | None,
    customer: str | None,
    attempt: int,
    outcome: str,
    error_code: str | None,
    duration_s: float,
) -> None:
    """The one line per command outcome, at WARNING for failures and rejections."""
    fields = {
        "event": "command_outcome",
        "command_type": command_type,
        "idempotency_key": idempotency_key,
        "correlation_id": correlation_id,
        "customer": customer,
        "attempt": attempt,
        "outcome": outcome,
        "error_code": error_code,
        "duration_s": round(duration_s, 6),
    }
    logger.log(_outcome_level(outcome), "command %s", outcome, extra=log_fields(**fields))
