"""The idempotency store: exactly-once effects on top of at-least-once delivery.

One record per idempotency key holds the command's fingerprint, its state, the lease of the
worker running it and the result event. ``claim`` decides atomically what a delivery of the
key may do; ``complete`` stores the result; ``release`` hands the key back unfinished.

States: ``running`` (leased), ``succeeded`` / ``failed`` (finished, with their event) and
``released`` (given back by ``release`` without a result: claimable again like ``failed``,
but no failure was recorded and no event is stored). ``Claim.attempts`` counts the claims
that granted a lease, i.e. executions started, including the one just granted.

A running record is taken over (``ACQUIRED_AFTER_CRASH``) when its lease expired, or when
its holder is another worker whose heartbeat is older than ``dead_after_s`` or missing:
every worker must call ``heartbeat`` before its first claim and every
``WORKER_HEARTBEAT_S`` after. A key leased by the asking owner itself is ``BUSY`` until the
lease expires, so one process never runs a key twice at once.
"""

from __future__ import annotations

import time

from worker.store.records import (
    Claim,
    ClaimStatus,
    Clock,
    FingerprintKeys,
    IdempotencyStore,
    RecordState,
    StoredRecord,
    StoreError,
)

# PostgreSQL connections per process, shared by its threads; and the longest one thread
# waits for a free (or reconnected) one. SQLite has one writer connection instead.
POOL_SIZE = 4
POOL_WAIT_S = 30.0
# SQLite: how long a write waits for another connection's write lock before the store counts
# as unavailable (a locked file is an outage like a PostgreSQL failover).
BUSY_TIMEOUT_S = 10.0


def open_store(
    url: str,
    *,
    clock: Clock = time.time,
    pool_size: int = POOL_SIZE,
    pool_wait_s: float = POOL_WAIT_S,
    busy_timeout_s: float = BUSY_TIMEOUT_S,
) -> IdempotencyStore:
    """Open (and create if needed) the store at ``sqlite:///...`` or ``postgresql://...``.

    ``pool_size`` and ``pool_wait_s`` bound PostgreSQL's connections per process and a
    thread's wait for one; SQLite ignores them. ``busy_timeout_s`` is SQLite's wait for a
    write lock another connection holds.
    """
    if url.startswith("sqlite:///"):
        from worker.store.sqlite import SqliteStore

        return SqliteStore(url, clock=clock, busy_timeout_s=busy_timeout_s)
    if url.startswith(("postgresql://", "postgres://")):
        from worker.store.postgres import PostgresStore

        return PostgresStore(url, clock=clock, pool_size=pool_size, pool_wait_s=pool_wait_s)
    raise StoreError("the store URL must start with sqlite:/// or postgresql://")


__all__ = [
    "POOL_SIZE",
    "POOL_WAIT_S",
    "Claim",
    "ClaimStatus",
    "Clock",
    "FingerprintKeys",
    "IdempotencyStore",
    "RecordState",
    "StoreError",
    "StoredRecord",
    "open_store",
]
