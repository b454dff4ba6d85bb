"""The store's part in exactly-once: uncertain attempts, the fingerprint key and its
migration, lease renewal, bounded purges that never delay the heartbeat, and PostgreSQL's
purge beside a claim in progress. Real SQLite files and real PostgreSQL."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.fixtures.stores import FakeClock
from tests.fixtures.wait import wait_until
from worker.app import StorePurger
from worker.config import Settings
from worker.leases import HeldLeases, Liveness
from worker.store import ClaimStatus, IdempotencyStore, fingerprint_key, open_store, schema

LEASE_S = 60.0
DEAD_S = 20.0

# The records table as the first release created it: no ``uncertain``, no store_meta.
OLD_RECORDS = """CREATE TABLE idempotency_records (
    key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, state TEXT NOT NULL,
    lease_owner TEXT, lease_expires_at {real}, attempts INTEGER NOT NULL,
    after_crash INTEGER NOT NULL DEFAULT 0, event {blob},
    created_at {real} NOT NULL, updated_at {real} NOT NULL)"""
OLD_ROW = (
    "INSERT INTO idempotency_records VALUES "
    "('old-key', 'legacy-fp', 'failed', 'w0', NULL, 1, 0, NULL, 1, 1)"
)


def execute_raw(store_url: str, *statements: str, params: Any = None) -> None:
    """Run SQL outside the store (an older release's tables, rows made in bulk)."""
    if store_url.startswith("sqlite"):
        with sqlite3.connect(store_url.removeprefix("sqlite:///")) as conn:
            for statement in statements:
                if params is None:
                    conn.execute(statement.format(real="REAL", blob="BLOB"))
                else:
                    conn.executemany(statement.replace("%s", "?"), params)
        return
    with psycopg.connect(store_url, autocommit=True) as pg:
        for statement in statements:
            if params is None:
                pg.execute(statement.format(real="DOUBLE PRECISION", blob="BYTEA"))
            else:
                pg.cursor().executemany(statement, params)


# --- uncertain attempts ---------------------------------------------------------------------


def test_an_uncertain_release_is_remembered_by_every_later_claim(store: IdempotencyStore) -> None:
    # Given an attempt that ended ambiguous and gave the key back for a delay tier
    store.heartbeat("w1")
    assert not store.claim("k", "fp", "w1", LEASE_S, DEAD_S).uncertain
    assert store.release("k", "w1", uncertain=True)
    # When the key is claimed again, fails cleanly, and is replayed
    again = store.claim("k", "fp", "w1", LEASE_S, DEAD_S)
    assert store.complete("k", "w1", False, b"failed", uncertain=False)
    replay = store.claim("k", "fp", "w1", LEASE_S, DEAD_S)
    # Then both claims know an earlier attempt may have applied it
    assert again.uncertain and replay.uncertain


def test_a_clean_failure_stays_certain_and_a_takeover_is_uncertain(
    store: IdempotencyStore, clock: FakeClock
) -> None:
    # Given a key that failed cleanly, and a key whose holder died mid-call
    store.claim("clean", "fp", "w1", LEASE_S, DEAD_S)
    store.complete("clean", "w1", False, b"failed")
    store.claim("cut", "fp", "dead", LEASE_S, DEAD_S)
    store.heartbeat("w2")
    # When both are claimed again
    clean = store.claim("clean", "fp", "w2", LEASE_S, DEAD_S)
    cut = store.claim("cut", "fp", "w2", LEASE_S, DEAD_S)
    # Then only the one cut by the crash is uncertain
    assert (clean.status, clean.uncertain) == (ClaimStatus.ACQUIRED, False)
    assert (cut.status, cut.uncertain) == (ClaimStatus.ACQUIRED_AFTER_CRASH, True)
    record = store.get("cut")
    assert record is not None and record.uncertain


# --- the fingerprint key --------------------------------------------------------------------


def test_the_fingerprint_key_is_made_once_and_shared_by_every_opener(store_url: str) -> None:
    # Given a new store opened by two workers
    first, second = open_store(store_url), open_store(store_url)
    try:
        # Then both have the same random key, without configuration, and no legacy rows
        keys = first.fingerprint_keys()
        assert keys == second.fingerprint_keys()
        assert len(keys.key) == fingerprint_key.FINGERPRINT_KEY_BYTES and not keys.legacy
    finally:
        first.close()
        second.close()


def test_an_older_store_is_migrated_and_its_records_keep_verifying(store_url: str) -> None:
    # Given a store an older release made, with one failed record
    execute_raw(store_url, OLD_RECORDS, OLD_ROW)
    # When it is opened now
    store = open_store(store_url)
    try:
        # Then its records are marked as legacy-fingerprinted and have gained the column
        assert store.fingerprint_keys().legacy
        record = store.get("old-key")
        assert record is not None and not record.uncertain
        # And only a claim carrying the legacy fingerprint matches it, which re-fingerprints it
        other = store.claim("old-key", "new-fp", "w1", LEASE_S, DEAD_S)
        assert other.status is ClaimStatus.CONFLICT
        claim = store.claim(
            "old-key", "new-fp", "w1", LEASE_S, DEAD_S, legacy_fingerprint="legacy-fp"
        )
        assert claim.status is ClaimStatus.ACQUIRED
        record = store.get("old-key")
        assert record is not None and record.fingerprint == "new-fp"
    finally:
        store.close()


# --- leases ---------------------------------------------------------------------------------


def test_renewed_leases_hold_past_their_first_expiry(
    store: IdempotencyStore, clock: FakeClock
) -> None:
    # Given a key and its customer leased by w1, and w2 waiting for both
    store.heartbeat("w1")
    store.claim("k", "fp", "w1", LEASE_S, DEAD_S, customer="c")
    # When w1 renews while its call runs, and the first lease time passes
    clock.now += LEASE_S - 1
    store.renew_leases("w1", ["k"], ["c"], LEASE_S)
    clock.now += 2
    store.heartbeat("w1")
    store.heartbeat("w2")
    # Then neither the key nor the customer can be taken
    assert store.claim("k", "fp", "w2", LEASE_S, DEAD_S).status is ClaimStatus.BUSY
    other_key = store.claim("k2", "fp", "w2", LEASE_S, DEAD_S, customer="c")
    assert other_key.status is ClaimStatus.CUSTOMER_BUSY
    # And without a renewal they could be
    clock.now += LEASE_S
    store.heartbeat("w2")
    assert store.claim("k", "fp", "w2", LEASE_S, DEAD_S).status is ClaimStatus.ACQUIRED_AFTER_CRASH


# --- purges ---------------------------------------------------------------------------------


def old_rows(store_url: str, count: int) -> None:
    rows = [(f"old-{i}", "fp", "succeeded", "w0", None, 1, 0, None, 1.0, 1.0) for i in range(count)]
    insert = (
        "INSERT INTO idempotency_records (key, fingerprint, state, lease_owner, "
        "lease_expires_at, attempts, after_crash, event, created_at, updated_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    )
    execute_raw(store_url, insert, params=rows)


def test_one_purge_run_is_bounded(store: IdempotencyStore, store_url: str) -> None:
    # Given more expired records than one run may delete
    old_rows(store_url, 2500)
    # When purged with a bound of 1000 / Then one batch goes per run, and the rest later
    assert store.purge_expired(1.0, max_rows=1000) == 1000
    assert store.purge_expired(1.0, max_rows=1000) == 1000
    assert store.purge_expired(1.0, max_rows=1000) == 500


def test_a_purge_of_many_rows_beside_a_live_heartbeat_takes_nothing_over(
    store_url: str, tmp_path: Path
) -> None:
    # Given a worker holding a key, heartbeating on its own thread and store every 0.1 s,
    # and 20,000 expired records (one bounded run) its purge thread is about to delete
    heartbeat_s, dead_s = 0.1, 1.0
    main, own = open_store(store_url), open_store(store_url, pool_size=1)
    rival = open_store(store_url)
    liveness = Liveness(own, "holder", HeldLeases(), heartbeat_s=heartbeat_s, lease_ttl_s=600)
    purger = StorePurger(main, Settings(retention_days=1.0))
    try:
        old_rows(store_url, schema.PURGE_MAX_ROWS_PER_RUN)
        liveness.beat()
        liveness.start()
        assert main.claim("held", "fp", "holder", 600, dead_s).status is ClaimStatus.ACQUIRED
        # When the purges run while another worker keeps asking for the held key
        purger.start()
        seen: set[ClaimStatus] = set()

        def purged() -> bool:
            seen.add(rival.claim("held", "fp", "rival", 600, dead_s).status)
            return (
                main.get(f"old-{schema.PURGE_MAX_ROWS_PER_RUN - 1}") is None
                and main.get("old-0") is None
            )

        wait_until(purged, 60, "every expired record purged")
        # Then the holder never looked dead: the key stayed busy throughout
        assert seen == {ClaimStatus.BUSY}
    finally:
        purger.stopped.set()
        liveness.stopped.set()
        liveness.join()
        for opened in (rival, own, main):
            opened.close()


@pytest.mark.postgres
def test_postgres_purge_leaves_a_row_a_claim_is_taking(pg_url: str) -> None:
    # Given an expired record that a claim is taking over in a transaction not yet committed
    clock = FakeClock()
    store = open_store(pg_url, clock=clock)
    try:
        store.claim("k", "fp", "w0", 1.0, DEAD_S)
        store.complete("k", "w0", False, b"failed")
        clock.now += 10_000
        with psycopg.connect(pg_url) as claimer:
            claimer.execute(
                "UPDATE idempotency_records SET state = 'running', lease_owner = 'w1', "
                "lease_expires_at = %s, updated_at = %s WHERE key = 'k'",
                (clock.now + LEASE_S, clock.now),
            )
            # When a purge runs meanwhile (it must not wait for, nor delete, that row)
            done: list[int] = []
            purge = threading.Thread(target=lambda: done.append(store.purge_expired(100.0)))
            purge.start()
            purge.join(timeout=10)
            assert done == [0]
            claimer.commit()
        # Then the claim's row survives, running
        record = store.get("k")
        assert record is not None and record.lease_owner == "w1"
    finally:
        store.close()
