"""`dlq groups`: the dead-letter queue as causes, counted, for triage.

A ``GroupTally`` is fed one message at a time while the queue is read and keeps one small
record per group, never the messages: 10,000 dead letters of five causes cost five records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from worker.broker import headers as h
from worker.ops.dlq_read import DeadLetter

ERROR_COLUMN_MAX_CHARS = 60
COLUMNS = ("GROUP", "COUNT", "TYPE", "REASON", "CODE", "OLDEST", "NEWEST", "EXAMPLE", "ERROR")


@dataclass
class Group:
    """One cause: its fields, how many dead letters have it, since when, and one of them."""

    id: str
    command_type: str
    reason: str
    error_code: str
    error: str  # the masked message
    example_key: str
    count: int = 0
    oldest: datetime | None = None
    newest: datetime | None = None

    def add(self, message: DeadLetter) -> None:
        self.count += 1
        first, last = message.first_failure, message.last_failure
        if first is not None and (self.oldest is None or first < self.oldest):
            self.oldest = first
        if last is not None and (self.newest is None or last > self.newest):
            self.newest = last

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "count": self.count,
            "command_type": self.command_type,
            "reason": self.reason,
            "error_code": self.error_code,
            "error": self.error,
            "oldest_failure": h.iso_utc(self.oldest) if self.oldest else None,
            "newest_failure": h.iso_utc(self.newest) if self.newest else None,
            "example_key": self.example_key,
        }


class GroupTally:
    """Counts dead letters per group; ``add`` keeps nothing of the message itself."""

    def __init__(self) -> None:
        self._groups: dict[str, Group] = {}
        self.total = 0

    def add(self, message: DeadLetter) -> bool:
        """Count ``message``; False, so that a reader using it as ``keep`` holds nothing."""
        self.total += 1
        gid = message.group_id
        group = self._groups.get(gid)
        if group is None:
            group = Group(
                gid,
                message.command_type or "",
                message.reason,
                message.error_code,
                message.masked_error,
                message.idempotency_key or message.message_id or "",
            )
            self._groups[gid] = group
        group.add(message)
        return False

    def groups(self) -> list[Group]:
        """Largest first; equal counts by id, so the order is the same in every call."""
        return sorted(self._groups.values(), key=lambda g: (-g.count, g.id))


def render_groups_json(queue: str, tally: GroupTally) -> str:
    groups = [g.as_dict() for g in tally.groups()]
    return json.dumps({"queue": queue, "total": tally.total, "groups": groups}, indent=2)


def _short(moment: datetime | None) -> str:
    return h.iso_utc(moment)[:19].replace("T", " ") if moment else "-"


def _clipped(text: str) -> str:
    if len(text) <= ERROR_COLUMN_MAX_CHARS:
        return text
    return text[: ERROR_COLUMN_MAX_CHARS - 1] + "…"  # the whole message is in --json


def render_groups_table(tally: GroupTally) -> str:
    rows = [
        [
            g.id,
            str(g.count),
            g.command_type or "-",
            g.reason,
            g.error_code or "-",
            _short(g.oldest),
            _short(g.newest),
            g.example_key or "-",
            _clipped(g.error) or "-",
        ]
        for g in tally.groups()
    ]
    header = list(COLUMNS)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]]
    return "\n".join(line.rstrip() for line in lines)
