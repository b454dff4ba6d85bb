"""Upkeep of the order tables (docs/ordering.md, "Stuck holds" and "Aliases"): what
operators and the worker's own checks read and repair, beside the hot path's
``OrderStore``.

- A hold's row tells how long it has waited (``updated_at``: set each time its holder went
  to a delay tier), so a hold older than the longest tier is *overdue*.
- ``release`` turns a hold whose holder never comes back into a draining one (its parked
  commands run) and remembers the holder in ``order_released``, so a copy of it that still
  shows up is recognised and reported.
- Aliases are purged once no command was routed through them for the retention
  (``used_at``, refreshed by the sequencer), in bounded batches, like the records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from worker.store.order import READ_PARTITIONING, RELEASED, OrderStore
from worker.store.schema import PURGE_BATCH_ROWS, PURGE_MAX_ROWS_PER_RUN

Execute = Callable[[str, dict[str, Any]], Any]

# An operator's listing: no body, no properties (passwords rest there), only counts.
LIST_HOLDS = """SELECT h.order_key, h.holder, h.part_no, h.updated_at,
    (SELECT COUNT(*) FROM order_parked p WHERE p.order_key = h.order_key)
FROM order_holds h {where} ORDER BY h.updated_at, h.order_key"""
HOLD_ROW = "SELECT holder, part_no FROM order_holds WHERE order_key = :key"
RELEASE_HOLD = """UPDATE order_holds SET holder = NULL, updated_at = :now
WHERE order_key = :key AND holder IS NOT NULL"""
REMEMBER_RELEASED = """INSERT INTO order_released (holder, order_key, released_at)
VALUES (:holder, :key, :now)
ON CONFLICT (holder) DO UPDATE SET order_key = excluded.order_key,
    released_at = excluded.released_at"""
TAKE_RELEASED = "DELETE FROM order_released WHERE holder = :holder RETURNING order_key"
PURGE_ALIASES = """DELETE FROM order_aliases WHERE COALESCE(used_at, created_at) < :cutoff
AND name IN (SELECT name FROM order_aliases WHERE COALESCE(used_at, created_at) < :cutoff
             LIMIT :batch)"""
PURGE_RELEASED = "DELETE FROM order_released WHERE released_at < :cutoff"

MEMBERS_CONFIGURED = "SELECT owner, partitions FROM order_members ORDER BY owner"
SET_SWITCH = """INSERT INTO store_meta (name, value) VALUES ('partitions_switch', :value)
ON CONFLICT (name) DO UPDATE SET value = excluded.value"""
SWITCH_STEP = "SELECT value FROM store_meta WHERE name = 'partitions_switch'"
END_SWITCH = "DELETE FROM store_meta WHERE name = 'partitions_switch'"
SET_PARTITIONS = "UPDATE store_meta SET value = :value WHERE name = 'partitions'"
PARTITION_LEASES_HELD = """SELECT COUNT(*) FROM order_leases
WHERE name <> 'sequencer' AND expires_at > :now"""
HELD_KEYS = "SELECT order_key FROM order_holds"
MOVE_HOLD = "UPDATE order_holds SET part_no = :partition WHERE order_key = :key"
MOVE_PARKED = "UPDATE order_parked SET part_no = :partition WHERE order_key = :key"

# Aliases live at least this long after their last use, whatever the records' retention:
# far beyond the longest wait of a command routed through one (a delay tier is an hour at
# most, and an overdue hold is reported well before), see docs/ordering.md.
ALIAS_MIN_RETENTION_S = 7 * 86400.0


def alias_retention_s(retention_days: float) -> float:
    """How long an alias no command was routed through is kept: the store's retention
    (``PROVISIONER_RETENTION_DAYS``), and never less than ``ALIAS_MIN_RETENTION_S``."""
    return max(retention_days * 86400, ALIAS_MIN_RETENTION_S)


def _param_name(partition: int) -> str:
    """``:part_bc`` for 12: statement parameters are letters only (``to_pyformat``)."""
    return "part_" + "".join(chr(ord("a") + int(digit)) for digit in str(partition))


@dataclass(frozen=True)
class HoldRow:
    """One hold as an operator sees it: never a body or a property of a command."""

    order_key: str
    holder: str | None  # the idempotency key in a delay tier; None: its backlog is running
    partition: int
    updated_at: float
    parked: int


class OrderUpkeep(OrderStore):
    """The order tables' upkeep: listing, release, overdue holds, alias purge."""

    def holds(self, partitions: Iterable[int] | None = None) -> list[HoldRow]:
        """Every hold, oldest first; only those of ``partitions`` when given."""
        params: dict[str, Any] = {}
        where = ""
        if partitions is not None:
            params = {_param_name(p): p for p in set(partitions)}
            if not params:
                return []
            where = "WHERE h.part_no IN (" + ", ".join(f":{name}" for name in params) + ")"
        sql = LIST_HOLDS.format(where=where)
        rows = self._run(lambda execute: execute(sql, params).fetchall())
        return [
            HoldRow(str(key), None if holder is None else str(holder), int(part), float(at), int(n))
            for key, holder, part, at, n in rows
        ]

    def hold(self, order_key: str) -> tuple[str | None, int] | None:
        """(holder, partition) of ``order_key``'s hold, or None when it is not held."""
        row = self._run(lambda execute: execute(HOLD_ROW, {"key": order_key}).fetchone())
        return None if row is None else (None if row[0] is None else str(row[0]), int(row[1]))

    def release(self, order_key: str) -> str | None:
        """Turn the hold draining; the holder it had (remembered as released), or None when
        the key is not held by anyone (no hold, or one already draining)."""
        now = self._clock()

        def work(execute: Execute) -> str | None:
            row = execute(HOLD_ROW, {"key": order_key}).fetchone()
            if row is None or row[0] is None:
                return None
            holder = str(row[0])
            execute(RELEASE_HOLD, {"key": order_key, "now": now})
            execute(REMEMBER_RELEASED, {"holder": holder, "key": order_key, "now": now})
            return holder

        return self._run(work)

    def take_released(self, holder: str) -> str | None:
        """The ordering key ``holder`` was released from (forgotten now), or None."""
        row = self._run(lambda execute: execute(TAKE_RELEASED, {"holder": holder}).fetchone())
        return None if row is None else str(row[0])

    # -- a change of P (worker.repartition) ---------------------------------------------

    def partitioning(self) -> tuple[int, str | None, dict[str, int | None]]:
        """(the deployment's P or 0, the change under way, each member's configured P)."""

        def work(execute: Execute) -> tuple[int, str | None, dict[str, int | None]]:
            meta = {
                str(name): bytes(value).decode("ascii", "replace")
                for name, value in execute(READ_PARTITIONING, {}).fetchall()
            }
            members = execute(MEMBERS_CONFIGURED, {}).fetchall()
            return (
                int(meta.get("partitions", "0") or 0),
                meta.get("partitions_switch"),
                {str(owner): None if p is None else int(p) for owner, p in members},
            )

        return self._run(work)

    def set_switch(self, value: str) -> None:
        params = {"value": value.encode()}
        self._run(lambda execute: execute(SET_SWITCH, params))

    def finish_switch(self, partitions: int, partition_of: Callable[[str], int]) -> bool:
        """Record ``partitions`` as the deployment's P, move every hold (and its parked
        commands) to its partition under it, and end the switch: one transaction, and only
        at its ``release`` step while no partition lease is held (False, nothing changed,
        otherwise)."""
        now = self._clock()

        def work(execute: Execute) -> bool:
            step = execute(SWITCH_STEP, {}).fetchone()
            if step is None or bytes(step[0]) != f"release:{partitions}".encode():
                return False  # finished already, or not at its last step
            if execute(PARTITION_LEASES_HELD, {"now": now}).fetchone()[0]:
                return False
            for (key,) in execute(HELD_KEYS, {}).fetchall():
                params = {"key": key, "partition": partition_of(str(key))}
                execute(MOVE_HOLD, params)
                execute(MOVE_PARKED, params)
            execute(SET_PARTITIONS, {"value": str(partitions).encode()})
            execute(END_SWITCH, {})
            return True

        return self._run(work)

    def touch_alias(self, name: str, order_key: str) -> None:
        """Mark the alias used now; written again if the purge took it meanwhile (the
        sequencer routes by it from memory, so the next sequencer must find it)."""
        self.add_alias(name, order_key)

    def purge(self, retention_s: float, max_rows: int = PURGE_MAX_ROWS_PER_RUN) -> int:
        """Aliases not used for ``retention_s``, and released holders remembered that long,
        in batches of ``PURGE_BATCH_ROWS`` (one transaction each), at most ``max_rows``."""
        params = {"cutoff": self._clock() - retention_s, "batch": PURGE_BATCH_ROWS}
        deleted = 0
        while deleted < max_rows:
            batch = int(self._run(lambda execute: execute(PURGE_ALIASES, params).rowcount))
            deleted += batch
            if batch < PURGE_BATCH_ROWS:
                break
        self._run(lambda execute: execute(PURGE_RELEASED, params))
        return deleted


__all__ = ["ALIAS_MIN_RETENTION_S", "RELEASED", "HoldRow", "OrderUpkeep", "alias_retention_s"]
