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
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

Clock = Callable[[], float]

# PostgreSQL connections per process, shared by its threads; and the longest one thread
# waits for a free (or reconnected) one. SQLite has one writer connection instead.
POOL_SIZE = 4
POOL_WAIT_S = 30.0


class StoreError(RuntimeError):
    """The store cannot be opened or used. The message never contains a password."""


class ClaimStatus(StrEnum):
    ACQUIRED = "acquired"
    ACQUIRED_AFTER_CRASH = "acquired_after_crash"
    SUCCEEDED = "succeeded"
    CONFLICT = "conflict"
    BUSY = "busy"
    CUSTOMER_BUSY = "customer_busy"  # another live worker runs a command of this customer


class RecordState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RELEASED = "released"


@dataclass(frozen=True, slots=True)
class Claim:
    status: ClaimStatus
    attempts: int
    event: bytes | None = None


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """One record as stored, for tests and operators; ``event`` is the raw bytes."""

    key: str
    fingerprint: str
    state: RecordState
    lease_owner: str | None
    lease_expires_at: float | None
    attempts: int
    after_crash: bool
    event: bytes | None
    created_at: float
    updated_at: float


class IdempotencyStore(Protocol):
    def claim(
        self,
        key: str,
        fingerprint: str,
        owner: str,
        lease_ttl_s: float,
        dead_after_s: float,
        customer: str | None = None,
    ) -> Claim:
        """Claim the key; with ``customer``, first that customer's lease, in the same write:
        ``CUSTOMER_BUSY`` when another live worker holds it (it is taken when free, already
        this owner's, expired, or held by a worker whose heartbeat is gone)."""
        ...

    def complete(self, key: str, owner: str, succeeded: bool, event: bytes) -> bool: ...

    def release(self, key: str, owner: str) -> bool: ...

    def unlock_customer(self, customer: str, owner: str) -> None:
        """Let the customer go (a no-op unless ``owner`` holds it); may return before the
        write is committed: a lost unlock only delays the next holder until the lease ends."""
        ...

    def heartbeat(self, owner: str) -> None: ...

    def forget_worker(self, owner: str) -> None: ...

    def purge_expired(self, retention_s: float) -> int: ...

    def get(self, key: str) -> StoredRecord | None: ...

    def close(self) -> None: ...


def open_store(
    url: str,
    *,
    clock: Clock = time.time,
    pool_size: int = POOL_SIZE,
    pool_wait_s: float = POOL_WAIT_S,
) -> IdempotencyStore:
    """Open (and create if needed) the store at ``sqlite:///...`` or ``postgresql://...``.

    ``pool_size`` and ``pool_wait_s`` bound PostgreSQL's connections per process and a
    thread's wait for one; SQLite ignores them.
    """
    if url.startswith("sqlite:///"):
        from worker.store.sqlite import SqliteStore

        return SqliteStore(url, clock=clock)
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
    "IdempotencyStore",
    "RecordState",
    "StoreError",
    "StoredRecord",
    "open_store",
]
