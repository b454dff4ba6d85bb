"""The store's share of per-customer order (docs/ordering.md): members, leases, aliases,
holds and parked commands, in tables beside the idempotency records.

- ``order_members``: worker processes taking part in partition ownership, with the time
  each was last seen (renewed every heartbeat) and the P it is configured with.
- ``order_leases``: who holds the sequencer role (``sequencer``) and each partition
  (``partition-<i>``), until when.
- ``order_aliases``: ``ChangeUsername`` made ``name`` an alias of an earlier ordering key;
  ``used_at``: when the sequencer last routed a command through it (hourly at most).
- ``order_holds``: an ordering key whose commands wait behind ``holder`` (an idempotency
  key in a delay tier), or, with no holder, behind the parked commands being run.
- ``order_parked``: commands waiting behind a hold, in ``seq`` order.
- ``order_released``: holders an operator released (``provisioner order release``), until
  a copy of them shows up or the retention purge (``worker.store.order_upkeep``).
- ``store_meta`` rows ``partitions``: the deployment's P, recorded by its first member;
  ``partitions_switch``: a change of P under way (``worker.repartition``).

Each operation is one transaction of the backend (``transact``), its statements written
once in SQLite's ``:name`` style.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from worker.store.schema import to_pyformat

T = TypeVar("T")

MEMBERS = "order_members"
LEASES = "order_leases"
ALIASES = "order_aliases"
HOLDS = "order_holds"
PARKED = "order_parked"
RELEASED = "order_released"
SEQUENCER_LEASE = "sequencer"


def partition_lease(partition: int) -> str:
    return f"partition-{partition}"


def order_schema_sql(real: str, blob: str) -> list[str]:
    return [
        f"CREATE TABLE IF NOT EXISTS {MEMBERS} (owner TEXT PRIMARY KEY, seen_at {real} NOT NULL)",
        f"""CREATE TABLE IF NOT EXISTS {LEASES} (
            name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at {real} NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS {ALIASES} (
            name TEXT PRIMARY KEY, order_key TEXT NOT NULL, created_at {real} NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS {HOLDS} (
            order_key TEXT PRIMARY KEY, part_no INTEGER NOT NULL, holder TEXT,
            updated_at {real} NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS {PARKED} (
            order_key TEXT NOT NULL, seq INTEGER NOT NULL, part_no INTEGER NOT NULL,
            routing_key TEXT NOT NULL, properties {blob} NOT NULL, body {blob} NOT NULL,
            created_at {real} NOT NULL, PRIMARY KEY (order_key, seq))""",
        f"""CREATE TABLE IF NOT EXISTS {RELEASED} (
            holder TEXT PRIMARY KEY, order_key TEXT NOT NULL, released_at {real} NOT NULL)""",
    ]


SEEN = """INSERT INTO order_members (owner, seen_at, partitions) VALUES (:owner, :now, :configured)
ON CONFLICT (owner) DO UPDATE SET seen_at = excluded.seen_at, partitions = excluded.partitions"""
LIVE_MEMBERS = """SELECT owner, partitions FROM order_members WHERE seen_at >= :cutoff
ORDER BY owner"""
# The deployment's P, recorded by the first member; and a change of P under way.
RECORD_PARTITIONS = """INSERT INTO store_meta (name, value) VALUES ('partitions', :value)
ON CONFLICT (name) DO NOTHING"""
READ_PARTITIONING = """SELECT name, value FROM store_meta
WHERE name IN ('partitions', 'partitions_switch')"""
LEAVE = "DELETE FROM order_members WHERE owner = :owner"
# Taken when free, already this owner's, or expired.
TAKE = """INSERT INTO order_leases (name, owner, expires_at) VALUES (:name, :owner, :expires_at)
ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
WHERE order_leases.owner = excluded.owner OR order_leases.expires_at <= :now
RETURNING owner"""
RELEASE = "DELETE FROM order_leases WHERE name = :name AND owner = :owner"
RELEASE_ALL = "DELETE FROM order_leases WHERE owner = :owner"
SEQUENCER_OWNER = "SELECT owner FROM order_leases WHERE name = 'sequencer' AND expires_at > :now"
LIVE_LEASES = "SELECT name, owner FROM order_leases WHERE expires_at > :now"
ALL_ALIASES = "SELECT name, order_key FROM order_aliases"
ADD_ALIAS = """INSERT INTO order_aliases (name, order_key, created_at, used_at)
VALUES (:name, :key, :now, :now)
ON CONFLICT (name) DO UPDATE SET order_key = excluded.order_key, used_at = excluded.used_at"""
HOLDS_OF = "SELECT order_key, holder FROM order_holds WHERE part_no = :partition"
SET_HOLD = """INSERT INTO order_holds (order_key, part_no, holder, updated_at)
VALUES (:key, :partition, :holder, :now)
ON CONFLICT (order_key) DO UPDATE SET holder = excluded.holder, updated_at = excluded.updated_at"""
DROP_HOLD = "DELETE FROM order_holds WHERE order_key = :key"
PARK = """INSERT INTO order_parked
    (order_key, seq, part_no, routing_key, properties, body, created_at)
SELECT :key, COALESCE(MAX(seq), 0) + 1, :partition, :routing_key, :properties, :body, :now
FROM order_parked WHERE order_key = :key
RETURNING seq"""
FIRST_PARKED = """SELECT seq, routing_key, properties, body FROM order_parked
WHERE order_key = :key ORDER BY seq LIMIT 1"""
UNPARK = "DELETE FROM order_parked WHERE order_key = :key AND seq = :seq"
REPARK = """UPDATE order_parked SET properties = :properties
WHERE order_key = :key AND seq = :seq"""
PARKED_COUNT = "SELECT COUNT(*) FROM order_parked WHERE order_key = :key"
PARKED_BODIES = "SELECT body FROM order_parked WHERE order_key = :key ORDER BY seq"


class Backend(Protocol):
    dialect: str

    def transact(self, work: Callable[[Any], T]) -> T: ...


@dataclass(frozen=True)
class Parked:
    order_key: str
    seq: int
    routing_key: str
    properties: bytes
    body: bytes


@dataclass(frozen=True)
class Tick:
    held: frozenset[str]  # lease names this owner holds after the tick
    members: tuple[str, ...]  # live members, sorted
    sequencer: str | None = None  # who holds the sequencer lease
    partitions: int = 0  # the deployment's P (store_meta), 0: not known
    switch: str | None = None  # a change of P under way: "drain:<P'>" or "release:<P'>"
    agreed: int | None = None  # the P every live member is configured with, if they agree


def _text(value: Any) -> str:
    return bytes(value).decode("ascii", "replace")


def _agreed(rows: list[Any]) -> int | None:
    configured = {row[1] for row in rows}
    if len(configured) != 1 or None in configured:
        return None  # they disagree, or one predates the column
    return int(configured.pop())


class OrderStore:
    def __init__(self, backend: Backend, clock: Callable[[], float] = time.time) -> None:
        self._backend = backend
        self._clock = clock
        self._pg = backend.dialect == "postgresql"

    def _sql(self, statement: str) -> str:
        return to_pyformat(statement) if self._pg else statement

    def _run(self, work: Callable[[Callable[[str, dict[str, Any]], Any]], T]) -> T:
        def in_transaction(conn: Any) -> T:
            return work(lambda sql, params: conn.execute(self._sql(sql), params))

        return self._backend.transact(in_transaction)

    # -- membership and leases ---------------------------------------------------------

    def tick(
        self,
        owner: str,
        take: Iterable[str],
        release: Iterable[str],
        ttl_s: float,
        dead_after_s: float,
        configured: int | None = None,
    ) -> Tick:
        """One heartbeat: be seen (configured with ``configured`` partitions), let go of
        ``release``, take or renew ``take``; the deployment's partitioning as it stands."""
        now = self._clock()
        take, release = list(take), list(release)

        def work(execute: Callable[[str, dict[str, Any]], Any]) -> Tick:
            execute(SEEN, {"owner": owner, "now": now, "configured": configured})
            if configured:
                execute(RECORD_PARTITIONS, {"value": str(configured).encode()})
            meta = {str(n): _text(v) for n, v in execute(READ_PARTITIONING, {}).fetchall()}
            for name in release:
                execute(RELEASE, {"name": name, "owner": owner})
            held = set()
            for name in take:
                params = {"name": name, "owner": owner, "now": now, "expires_at": now + ttl_s}
                if execute(TAKE, params).fetchone() is not None:
                    held.add(name)
            rows = execute(LIVE_MEMBERS, {"cutoff": now - dead_after_s}).fetchall()
            sequencer = execute(SEQUENCER_OWNER, {"now": now}).fetchone()
            return Tick(
                frozenset(held),
                tuple(str(r[0]) for r in rows),
                None if sequencer is None else str(sequencer[0]),
                int(meta.get("partitions", "0") or 0),
                meta.get("partitions_switch"),
                _agreed(rows),
            )

        return self._run(work)

    def leave(self, owner: str) -> None:
        """Stop taking part: membership and every lease go at once (a clean hand-over)."""
        self._run(
            lambda execute: (
                execute(LEAVE, {"owner": owner}),
                execute(RELEASE_ALL, {"owner": owner}),
            )
        )

    def leases(self) -> dict[str, str]:
        """Lease name -> owner, for those not expired (operators and tests)."""
        params = {"now": self._clock()}
        rows = self._run(lambda execute: execute(LIVE_LEASES, params).fetchall())
        return {str(name): str(owner) for name, owner in rows}

    def counts(self) -> tuple[int, int]:
        """(holds, parked commands), for operators and tests."""

        def work(execute: Callable[[str, dict[str, Any]], Any]) -> tuple[int, int]:
            holds = execute("SELECT COUNT(*) FROM order_holds", {}).fetchone()[0]
            parked = execute("SELECT COUNT(*) FROM order_parked", {}).fetchone()[0]
            return int(holds), int(parked)

        return self._run(work)

    # -- aliases -------------------------------------------------------------------------

    def aliases(self) -> dict[str, str]:
        rows = self._run(lambda execute: execute(ALL_ALIASES, {}).fetchall())
        return {str(name): str(key) for name, key in rows}

    def add_alias(self, name: str, order_key: str) -> None:
        params = {"name": name, "key": order_key, "now": self._clock()}
        self._run(lambda execute: execute(ADD_ALIAS, params))

    # -- holds and parked commands -------------------------------------------------------

    def holds_of(self, partition: int) -> dict[str, str | None]:
        rows = self._run(lambda execute: execute(HOLDS_OF, {"partition": partition}).fetchall())
        return {str(key): (None if holder is None else str(holder)) for key, holder in rows}

    def set_hold(self, order_key: str, partition: int, holder: str | None) -> None:
        params = {"key": order_key, "partition": partition, "holder": holder, "now": self._clock()}
        self._run(lambda execute: execute(SET_HOLD, params))

    def drop_hold_if_empty(self, order_key: str) -> bool:
        """Delete the hold unless commands are still parked behind it; True when deleted."""

        def work(execute: Callable[[str, dict[str, Any]], Any]) -> bool:
            if execute(PARKED_COUNT, {"key": order_key}).fetchone()[0]:
                return False
            execute(DROP_HOLD, {"key": order_key})
            return True

        return self._run(work)

    def park(
        self, order_key: str, partition: int, routing_key: str, properties: bytes, body: bytes
    ) -> int:
        params = {
            "key": order_key,
            "partition": partition,
            "routing_key": routing_key,
            "properties": properties,
            "body": body,
            "now": self._clock(),
        }
        return int(self._run(lambda execute: execute(PARK, params).fetchone()[0]))

    def first_parked(self, order_key: str) -> Parked | None:
        row = self._run(lambda execute: execute(FIRST_PARKED, {"key": order_key}).fetchone())
        if row is None:
            return None
        seq, routing_key, properties, body = row
        return Parked(order_key, int(seq), str(routing_key), bytes(properties), bytes(body))

    def parked_bodies(self, order_key: str) -> list[bytes]:
        """The bodies parked behind ``order_key``'s hold, in order (a rare look: a returned
        delivery of a held customer asks whether its predecessor is among them)."""
        rows = self._run(lambda execute: execute(PARKED_BODIES, {"key": order_key}).fetchall())
        return [bytes(row[0]) for row in rows]

    def unpark(self, order_key: str, seq: int) -> None:
        self._run(lambda execute: execute(UNPARK, {"key": order_key, "seq": seq}))

    def repark(self, order_key: str, seq: int, properties: bytes) -> None:
        """A parked command's stored properties replaced (marked as run once)."""
        params = {"key": order_key, "seq": seq, "properties": properties}
        self._run(lambda execute: execute(REPARK, params))
