"""Which dead letters an operator means: the filters of `dlq list|replay|purge`.

Every given criterion must hold; none given matches every message. ``group`` is the id
`dlq groups` prints (``worker.ops.dlq_cause``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta

from worker.config import parse_duration_s
from worker.ops.dlq_read import DeadLetter, moment_of


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """An ISO date/time (UTC when no zone) or a duration back from now (``2h``, ``30m``, ``3d``)."""
    now = now or datetime.now(UTC)
    stripped = text.strip()
    if stripped.endswith("d") and stripped[:-1].replace(".", "", 1).isdigit():
        return now - timedelta(days=float(stripped[:-1]))
    try:
        return now - timedelta(seconds=parse_duration_s(stripped))
    except ValueError:
        pass
    moment = moment_of(stripped)
    if moment is None:
        raise ValueError(f"not a date/time or duration: {text!r} (e.g. 2h, 2026-01-31T08:00)")
    return moment


@dataclass(frozen=True)
class Filters:
    command_type: str | None = None
    reason: str | None = None
    error_code: str | None = None
    idempotency_key: str | None = None
    customer: str | None = None
    since: datetime | None = None
    group: str | None = None

    @property
    def empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))

    def matches(self, message: DeadLetter) -> bool:
        pairs = (
            (self.command_type, message.command_type),
            (self.reason, message.reason),
            (self.error_code, message.error_code),
            (self.idempotency_key, message.idempotency_key),
            (self.customer, message.customer),
        )
        if any(wanted is not None and wanted != actual for wanted, actual in pairs):
            return False
        if self.group is not None and self.group != message.group_id:
            return False
        if self.since is not None:
            failed_at = message.last_failure
            return failed_at is not None and failed_at >= self.since
        return True
