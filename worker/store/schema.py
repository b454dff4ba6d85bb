"""SQL shared by both backends, and the claim decision they both apply.

Statements use ``:name`` parameters (SQLite's style); ``to_pyformat`` converts them for
psycopg. Timestamps are epoch seconds (double precision) from the store's injected clock, so
both backends behave identically under a test clock.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

from worker.store.records import Claim, ClaimStatus, RecordState, StoredRecord

# Rows deleted per purge statement, so a large purge never holds the write lock for long,
# and per purge run, so one run ends in bounded time (the next one continues).
PURGE_BATCH_ROWS = 1000
PURGE_MAX_ROWS_PER_RUN = 20_000
# How often claim re-tries when a record changes between its upsert and its read-back.
CLAIM_ROUNDS = 3

RECORDS = "idempotency_records"
WORKERS = "idempotency_workers"
CUSTOMER_LEASES = "customer_leases"
META = "store_meta"

# Columns added after the first release: (table, column, definition), added when missing.
# DOUBLE PRECISION is a double in both dialects (SQLite: REAL affinity).
ADDED_COLUMNS = (
    (RECORDS, "uncertain", "INTEGER NOT NULL DEFAULT 0"),
    ("order_aliases", "used_at", "DOUBLE PRECISION"),
    ("order_members", "partitions", "INTEGER"),
)


def create_schema_sql(real: str, blob: str) -> list[str]:
    """DDL with the dialect's names for a double and a byte string."""
    return [
        f"""CREATE TABLE IF NOT EXISTS {RECORDS} (
            key TEXT PRIMARY KEY,
            fingerprint TEXT NOT NULL,
            state TEXT NOT NULL
                CHECK (state IN ('running', 'succeeded', 'failed', 'released')),
            lease_owner TEXT,
            lease_expires_at {real},
            attempts INTEGER NOT NULL,
            after_crash INTEGER NOT NULL DEFAULT 0,
            uncertain INTEGER NOT NULL DEFAULT 0,
            event {blob},
            created_at {real} NOT NULL,
            updated_at {real} NOT NULL
        )""",
        f"CREATE INDEX IF NOT EXISTS {RECORDS}_updated_at ON {RECORDS} (updated_at)",
        f"CREATE INDEX IF NOT EXISTS {RECORDS}_lease_expires_at ON {RECORDS} (lease_expires_at)",
        f"""CREATE TABLE IF NOT EXISTS {WORKERS} (
            owner TEXT PRIMARY KEY,
            last_seen_at {real} NOT NULL
        )""",
        f"""CREATE TABLE IF NOT EXISTS {CUSTOMER_LEASES} (
            customer TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            expires_at {real} NOT NULL
        )""",
        f"""CREATE TABLE IF NOT EXISTS {META} (
            name TEXT PRIMARY KEY,
            value {blob} NOT NULL
        )""",
    ]


# A running record may be taken when its lease expired, or when it is held by another
# owner whose heartbeat is missing or older than the dead cutoff.
_TAKEABLE = """(
    idempotency_records.state IN ('failed', 'released')
    OR (idempotency_records.state = 'running' AND (
        idempotency_records.lease_expires_at <= :now
        OR (idempotency_records.lease_owner <> :owner AND NOT EXISTS (
            SELECT 1 FROM idempotency_workers w
            WHERE w.owner = idempotency_records.lease_owner
              AND w.last_seen_at >= :dead_cutoff)))))"""

# One statement creates a new record or takes over a claimable one; it returns no row when
# the key is in conflict, finished or busy, which READ_CLAIM then tells apart. Taking over a
# running record (its holder died or lost the lease mid-call) marks the key uncertain for
# good: that attempt may have applied the call unseen. A record fingerprinted with the
# legacy key is re-fingerprinted with the store's key when it is taken.
CLAIM = (
    """
INSERT INTO idempotency_records (key, fingerprint, state, lease_owner, lease_expires_at, attempts,
                       after_crash, uncertain, event, created_at, updated_at)
VALUES (:key, :fingerprint, 'running', :owner, :lease_expires_at, 1, 0, 0, NULL, :now, :now)
ON CONFLICT (key) DO UPDATE SET
    fingerprint = excluded.fingerprint,
    state = 'running',
    lease_owner = excluded.lease_owner,
    lease_expires_at = excluded.lease_expires_at,
    attempts = idempotency_records.attempts + 1,
    after_crash = CASE WHEN idempotency_records.state = 'running' THEN 1 ELSE 0 END,
    uncertain = CASE WHEN idempotency_records.state = 'running' THEN 1
                     ELSE idempotency_records.uncertain END,
    event = NULL,
    updated_at = excluded.updated_at
WHERE idempotency_records.fingerprint IN (excluded.fingerprint, :legacy_fingerprint) AND """
    + _TAKEABLE
    + """
RETURNING attempts, after_crash, uncertain"""
)

READ_CLAIM = """
SELECT r.fingerprint, r.state, r.lease_owner, r.lease_expires_at, r.attempts, r.event,
       w.last_seen_at
FROM idempotency_records r LEFT JOIN idempotency_workers w ON w.owner = r.lease_owner
WHERE r.key = :key"""

# Repeating a completion that already landed (same owner, state and event) reports success,
# so a call retried after a lost connection gives the right answer.
# ``uncertain`` is only ever raised: once an attempt may have applied the call unseen, every
# later execution of the key must resolve before it repeats it.
COMPLETE = """
UPDATE idempotency_records SET state = :state, event = :event, lease_expires_at = NULL,
                     uncertain = CASE WHEN :uncertain = 1 THEN 1 ELSE uncertain END,
                     updated_at = :now
WHERE key = :key AND lease_owner = :owner
  AND (state = 'running' OR (state = :state AND event = :event))"""

RELEASE = """
UPDATE idempotency_records SET state = 'released', event = NULL, lease_expires_at = NULL,
                     uncertain = CASE WHEN :uncertain = 1 THEN 1 ELSE uncertain END,
                     updated_at = :now
WHERE key = :key AND lease_owner = :owner AND state IN ('running', 'released')"""

# A customer's lease: one worker process at a time runs that customer's commands. Taken when
# free, already this owner's, expired, or held by an owner whose heartbeat is gone.
LOCK_CUSTOMER = """
INSERT INTO customer_leases (customer, owner, expires_at)
VALUES (:customer, :owner, :lease_expires_at)
ON CONFLICT (customer) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
WHERE customer_leases.owner = excluded.owner
   OR customer_leases.expires_at <= :now
   OR NOT EXISTS (
       SELECT 1 FROM idempotency_workers w
       WHERE w.owner = customer_leases.owner AND w.last_seen_at >= :dead_cutoff)
RETURNING owner"""

# Leases of calls still in flight, pushed forward by the holder's liveness thread.
RENEW_LEASE = """
UPDATE idempotency_records SET lease_expires_at = :lease_expires_at
WHERE key = :key AND lease_owner = :owner AND state = 'running'"""

RENEW_CUSTOMER = """
UPDATE customer_leases SET expires_at = :lease_expires_at
WHERE customer = :customer AND owner = :owner"""

UNLOCK_CUSTOMER = "DELETE FROM customer_leases WHERE customer = :customer AND owner = :owner"

PURGE_CUSTOMER_LEASES = "DELETE FROM customer_leases WHERE expires_at < :cutoff"

HEARTBEAT = """
INSERT INTO idempotency_workers (owner, last_seen_at) VALUES (:owner, :now)
ON CONFLICT (owner) DO UPDATE SET last_seen_at = excluded.last_seen_at"""

FORGET_WORKER = "DELETE FROM idempotency_workers WHERE owner = :owner"

# Finished records older than the cutoff, and running ones whose lease ran out before it;
# a running record with a live lease is never touched. The predicate stands on the DELETE
# itself too: PostgreSQL re-checks that one on a row it had to wait for (one re-claimed
# meanwhile survives), and its variant skips rows another transaction holds.
PURGE_RECORDS = """
DELETE FROM idempotency_records
WHERE ((state IN ('succeeded', 'failed', 'released') AND updated_at < :cutoff)
       OR (state = 'running' AND lease_expires_at < :cutoff))
  AND key IN (
    SELECT key FROM idempotency_records
    WHERE (state IN ('succeeded', 'failed', 'released') AND updated_at < :cutoff)
       OR (state = 'running' AND lease_expires_at < :cutoff)
    LIMIT :batch)"""
# PostgreSQL: rows locked by a claim in progress are left for the next purge.
PURGE_RECORDS_SKIP_LOCKED = PURGE_RECORDS.removesuffix(")") + " FOR UPDATE SKIP LOCKED)"

PURGE_WORKERS = "DELETE FROM idempotency_workers WHERE last_seen_at < :cutoff"

GET = """
SELECT key, fingerprint, state, lease_owner, lease_expires_at, attempts, after_crash, uncertain,
       event, created_at, updated_at
FROM idempotency_records WHERE key = :key"""


def to_pyformat(sql: str) -> str:
    """``:name`` -> ``%(name)s`` for psycopg."""
    return re.sub(r"(?<![:\w]):([a-z_]+)", r"%(\1)s", sql)


def claim_params(
    key: str,
    fingerprint: str,
    owner: str,
    lease_ttl_s: float,
    dead_after_s: float,
    now: float,
    customer: str | None = None,
    legacy_fingerprint: str | None = None,
) -> dict[str, Any]:
    """The parameters of CLAIM, READ_CLAIM and LOCK_CUSTOMER: the key's lease and the
    customer's run to the same time."""
    return {
        "key": key,
        "fingerprint": fingerprint,
        "legacy_fingerprint": legacy_fingerprint or fingerprint,
        "customer": customer or "",
        "owner": owner,
        "now": now,
        "lease_expires_at": now + lease_ttl_s,
        "dead_cutoff": now - dead_after_s,
    }


def complete_params(
    key: str, owner: str, succeeded: bool, event: bytes, uncertain: bool, now: float
) -> dict[str, Any]:
    state = RecordState.SUCCEEDED if succeeded else RecordState.FAILED
    return {
        "key": key,
        "owner": owner,
        "state": state.value,
        "event": event,
        "uncertain": int(uncertain),
        "now": now,
    }


def renew_params(
    owner: str, keys: Collection[str], customers: Collection[str], expires_at: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows of RENEW_LEASE and RENEW_CUSTOMER."""
    leases = [{"key": k, "owner": owner, "lease_expires_at": expires_at} for k in keys]
    customer_leases = [
        {"customer": c, "owner": owner, "lease_expires_at": expires_at} for c in customers
    ]
    return leases, customer_leases


def acquired(row: tuple[Any, ...]) -> Claim:
    """The claim for a row returned by CLAIM: (attempts, after_crash, uncertain)."""
    attempts, after_crash, uncertain = row
    status = ClaimStatus.ACQUIRED_AFTER_CRASH if after_crash else ClaimStatus.ACQUIRED
    return Claim(status, int(attempts), uncertain=bool(uncertain))


def refused(row: tuple[Any, ...] | None, params: dict[str, Any]) -> Claim | None:
    """Why CLAIM took nothing, from a READ_CLAIM row; None when the key is claimable now
    (it changed in between, or vanished), so the caller claims again."""
    if row is None:
        return None
    fingerprint, state, lease_owner, lease_expires_at, attempts, event, seen_at = row
    if fingerprint not in (params["fingerprint"], params["legacy_fingerprint"]):
        return Claim(ClaimStatus.CONFLICT, int(attempts))
    if state == RecordState.SUCCEEDED:
        return Claim(ClaimStatus.SUCCEEDED, int(attempts), bytes(event))
    if state != RecordState.RUNNING or lease_expires_at <= params["now"]:
        return None
    if lease_owner != params["owner"] and (seen_at is None or seen_at < params["dead_cutoff"]):
        return None
    return Claim(ClaimStatus.BUSY, int(attempts))


def stored_record(row: tuple[Any, ...]) -> StoredRecord:
    key, fingerprint, state, owner, expires, attempts, after_crash, uncertain = row[:8]
    event, created, updated = row[8:]
    return StoredRecord(
        key=key,
        fingerprint=fingerprint,
        state=RecordState(state),
        lease_owner=owner,
        lease_expires_at=expires,
        attempts=int(attempts),
        after_crash=bool(after_crash),
        uncertain=bool(uncertain),
        event=None if event is None else bytes(event),
        created_at=float(created),
        updated_at=float(updated),
    )
