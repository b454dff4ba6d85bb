"""What the idempotency store holds and promises: claims, records and the store protocol.

Below the backends (``sqlite``, ``postgres``) and the package face, which re-exports it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

Clock = Callable[[], float]


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
    # An earlier attempt of this key ended ambiguous or was cut by a crash: its effect may
    # exist, so this execution resolves before it repeats the call.
    uncertain: bool = False


@dataclass(frozen=True, slots=True)
class FingerprintKeys:
    """The HMAC key of the commands' fingerprints: created once, at random, in the store, so
    every replica has it without configuration and rotating the API key changes nothing.
    ``legacy``: the store held records before it had a key; those were fingerprinted with
    the API key and still verify with it."""

    key: bytes = field(repr=False)
    legacy: bool = False


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
    uncertain: bool
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
        legacy_fingerprint: str | None = None,
    ) -> Claim:
        """Claim the key; with ``customer``, first that customer's lease, in the same write:
        ``CUSTOMER_BUSY`` when another live worker holds it (it is taken when free, already
        this owner's, expired, or held by a worker whose heartbeat is gone). A record whose
        fingerprint is ``legacy_fingerprint`` matches too (see ``FingerprintKeys``)."""
        ...

    def complete(
        self,
        key: str,
        owner: str,
        succeeded: bool,
        event: bytes,
        uncertain: bool = False,
        customer: str | None = None,
    ) -> bool:
        """Store the result; False when ``owner`` no longer holds the lease (another worker
        took the key over). ``uncertain`` is recorded for every later execution. With
        ``customer``, its lease is let go in the same write (as ``unlock_customer``, and
        whether or not the result was stored), once that write is committed."""
        ...

    def release(self, key: str, owner: str, uncertain: bool = False) -> bool: ...

    def renew_leases(
        self, owner: str, keys: Collection[str], customers: Collection[str], lease_ttl_s: float
    ) -> None:
        """Push the leases ``owner`` still holds on these keys and customers forward."""
        ...

    def fingerprint_keys(self) -> FingerprintKeys: ...

    def unlock_customer(self, customer: str, owner: str) -> None:
        """Let the customer go (a no-op unless ``owner`` holds it); may return before the
        write is committed: a lost unlock only delays the next holder until the lease ends."""
        ...

    def heartbeat(self, owner: str) -> None: ...

    def forget_worker(self, owner: str) -> None: ...

    def purge_expired(self, retention_s: float, max_rows: int = ...) -> int:
        """Delete records finished (or expired) longer than ``retention_s`` ago, at most about
        ``max_rows`` per call; returns how many went."""
        ...

    def get(self, key: str) -> StoredRecord | None: ...

    def close(self) -> None: ...
