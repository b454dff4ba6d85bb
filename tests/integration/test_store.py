"""The idempotency store, one suite over both backends (real SQLite file, real PostgreSQL)."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.fixtures.postgres import base_pg_url
from tests.fixtures.stores import T0, FakeClock
from tests.fixtures.wait import wait_until
from worker.store import ClaimStatus, IdempotencyStore, RecordState, StoreError, open_store

LEASE_S = 60.0
DEAD_S = 20.0


def claim(store: IdempotencyStore, key: str, owner: str, fingerprint: str = "fp-1") -> Any:
    return store.claim(key, fingerprint, owner, LEASE_S, DEAD_S)


def test_new_key_is_acquired_and_leased(store: IdempotencyStore) -> None:
    # Given no record for the key
    # When a worker claims it
    result = claim(store, "k1", "w1")
    # Then it runs the command, as the first attempt, holding the lease
    assert (result.status, result.attempts, result.event) == (ClaimStatus.ACQUIRED, 1, None)
    record = store.get("k1")
    assert record is not None
    assert (record.state, record.lease_owner) == (RecordState.RUNNING, "w1")
    assert record.lease_expires_at == T0 + LEASE_S


def test_other_fingerprint_conflicts_in_every_state(store: IdempotencyStore) -> None:
    # Given one key running, one succeeded and one failed
    for key in ("running", "succeeded", "failed"):
        claim(store, key, "w1")
    store.complete("succeeded", "w1", True, b"ok")
    store.complete("failed", "w1", False, b"no")
    # When another payload arrives under each key
    # Then every one is a conflict and nothing changes
    for key in ("running", "succeeded", "failed"):
        assert claim(store, key, "w2", fingerprint="fp-other").status == ClaimStatus.CONFLICT
    assert store.get("running").state == RecordState.RUNNING  # type: ignore[union-attr]


def test_succeeded_key_returns_its_event(store: IdempotencyStore) -> None:
    # Given a key that succeeded with an event
    claim(store, "k1", "w1")
    assert store.complete("k1", "w1", True, b'{"type":"CustomerCreated"}')
    # When it is delivered again
    result = claim(store, "k1", "w2")
    # Then the stored event comes back and the record is untouched
    assert result.status == ClaimStatus.SUCCEEDED
    assert result.event == b'{"type":"CustomerCreated"}'
    record = store.get("k1")
    assert record is not None
    assert (record.state, record.attempts, record.lease_expires_at) == ("succeeded", 1, None)


def test_failed_key_runs_again(store: IdempotencyStore) -> None:
    # Given a key that failed
    claim(store, "k1", "w1")
    assert store.complete("k1", "w1", False, b"failed-event")
    # When it is delivered again
    result = claim(store, "k1", "w2")
    # Then it runs again as a second attempt, leased to the new owner, the old event gone
    assert (result.status, result.attempts) == (ClaimStatus.ACQUIRED, 2)
    record = store.get("k1")
    assert record is not None
    assert (record.state, record.lease_owner, record.event) == ("running", "w2", None)


def test_same_owner_is_busy_while_its_lease_lives(store: IdempotencyStore) -> None:
    # Given a key leased by this very worker (whose heartbeat does not even matter)
    claim(store, "k1", "w1")
    # When the same worker claims it again (a redelivery in the same process)
    result = claim(store, "k1", "w1")
    # Then it is busy: one key never runs twice at once
    assert (result.status, result.attempts) == (ClaimStatus.BUSY, 1)


def test_live_other_owner_is_busy(store: IdempotencyStore, clock: FakeClock) -> None:
    # Given a key leased by another worker that heartbeats within dead_after
    store.heartbeat("w1")
    claim(store, "k1", "w1")
    clock.advance(DEAD_S - 1)
    store.heartbeat("w1")
    clock.advance(DEAD_S - 1)
    # When a second worker claims it
    # Then it must retry later
    assert claim(store, "k1", "w2").status == ClaimStatus.BUSY


def test_dead_owner_is_taken_over_after_crash(store: IdempotencyStore, clock: FakeClock) -> None:
    # Given a key leased by a worker whose last heartbeat is older than dead_after
    store.heartbeat("w1")
    claim(store, "k1", "w1")
    clock.advance(DEAD_S + 1)
    # When another worker claims it (its lease has not expired yet)
    result = claim(store, "k1", "w2")
    # Then it takes the lease and must read back the API's state first
    assert (result.status, result.attempts) == (ClaimStatus.ACQUIRED_AFTER_CRASH, 2)
    record = store.get("k1")
    assert record is not None
    assert (record.lease_owner, record.after_crash) == ("w2", True)


def test_owner_without_heartbeat_is_dead(store: IdempotencyStore) -> None:
    # Given a key leased by a worker that never heartbeated
    claim(store, "k1", "w1")
    # When another worker claims it
    # Then the holder counts as dead
    assert claim(store, "k1", "w2").status == ClaimStatus.ACQUIRED_AFTER_CRASH


def test_forgotten_worker_leases_are_taken_over(store: IdempotencyStore) -> None:
    # Given a worker that holds a key, then shuts down and forgets itself
    store.heartbeat("w1")
    claim(store, "k1", "w1")
    store.forget_worker("w1")
    # When another worker claims the key
    # Then it is taken over
    assert claim(store, "k1", "w2").status == ClaimStatus.ACQUIRED_AFTER_CRASH


def test_expired_lease_is_taken_over(store: IdempotencyStore, clock: FakeClock) -> None:
    # Given a key whose holder is alive but whose lease ran out
    store.heartbeat("w1")
    claim(store, "k1", "w1")
    clock.advance(LEASE_S + 1)
    store.heartbeat("w1")
    # When another worker, and then the holder itself, claim it
    taken = claim(store, "k1", "w2")
    # Then the lease moves to the new worker, which reads back first
    assert (taken.status, taken.attempts) == (ClaimStatus.ACQUIRED_AFTER_CRASH, 2)
    store.heartbeat("w2")
    assert claim(store, "k1", "w1").status == ClaimStatus.BUSY


def test_stale_owner_cannot_complete(store: IdempotencyStore, clock: FakeClock) -> None:
    # Given a key taken over from a worker that lost its lease, and completed by the new one
    claim(store, "k1", "w1")
    clock.advance(LEASE_S + 1)
    claim(store, "k1", "w2")
    assert store.complete("k1", "w2", True, b"new")
    # When the old holder tries to store its own result
    refused = store.complete("k1", "w1", False, b"old")
    # Then it is refused and the new holder's result stands
    assert refused is False
    assert store.get("k1").event == b"new"  # type: ignore[union-attr]


def test_repeated_complete_by_holder_is_accepted(store: IdempotencyStore) -> None:
    # Given a key the holder completed
    claim(store, "k1", "w1")
    assert store.complete("k1", "w1", True, b"ev")
    # When the same completion is sent again (e.g. after a lost connection)
    # Then it reports success, but a different result is refused
    assert store.complete("k1", "w1", True, b"ev")
    assert not store.complete("k1", "w1", False, b"other")
    assert store.get("k1").state == RecordState.SUCCEEDED  # type: ignore[union-attr]


def test_release_gives_the_key_back(store: IdempotencyStore) -> None:
    # Given a key held by w1
    store.heartbeat("w1")
    claim(store, "k1", "w1")
    # When another worker tries to release it, then the holder does
    assert not store.release("k1", "w2")
    assert store.release("k1", "w1")
    # Then it is released without a result and the next claim runs it normally
    record = store.get("k1")
    assert record is not None
    assert (record.state, record.event, record.lease_expires_at) == ("released", None, None)
    result = claim(store, "k1", "w2")
    assert (result.status, result.attempts) == (ClaimStatus.ACQUIRED, 2)
    assert not store.complete("k1", "w1", True, b"late")


def test_purge_keeps_running_and_recent(store: IdempotencyStore, clock: FakeClock) -> None:
    retention_s = 1000.0
    # Given old finished records, an old record whose lease is still live, and recent ones
    old_keys = ("old-ok", "old-failed", "old-released", "old-abandoned", "old-running")
    for key in (*old_keys, "recent-ok"):
        store.claim(key, "fp", "w1", 10 * retention_s if key == "old-running" else LEASE_S, DEAD_S)
    store.complete("old-ok", "w1", True, b"e")
    store.complete("old-failed", "w1", False, b"e")
    store.release("old-released", "w1")
    clock.advance(retention_s + LEASE_S + 1)
    store.complete("recent-ok", "w1", True, b"e")
    claim(store, "recent-running", "w1")
    # When expired records are purged
    deleted = store.purge_expired(retention_s)
    # Then only the old finished ones, and the one whose lease ran out long ago, are gone
    assert deleted == 4
    assert [k for k in old_keys if store.get(k) is None] == list(old_keys[:4])
    left = {k for k in ("old-running", "recent-ok", "recent-running") if store.get(k)}
    assert left == {"old-running", "recent-ok", "recent-running"}


def lock(store: IdempotencyStore, customer: str, owner: str) -> bool:
    """Whether ``owner`` gets the customer's lease (claiming a fresh key with it)."""
    claimed = store.claim(uuid.uuid4().hex, "fp-1", owner, LEASE_S, DEAD_S, customer=customer)
    return claimed.status is not ClaimStatus.CUSTOMER_BUSY


def test_a_customer_runs_in_one_live_worker_at_a_time(
    store: IdempotencyStore, clock: FakeClock
) -> None:
    # Given two live workers, one holding a customer's lease
    store.heartbeat("w1")
    store.heartbeat("w2")
    assert lock(store, "ada", "w1")
    # Then another worker cannot take it, another customer is free, and w1 may take it again
    assert not lock(store, "ada", "w2")
    assert lock(store, "bob", "w2")
    assert lock(store, "ada", "w1")
    # When w1 lets it go; Then w2 gets it, and w1 no longer can
    store.unlock_customer("ada", "w1")
    assert lock(store, "ada", "w2")
    assert not lock(store, "ada", "w1")


def test_unlock_by_another_owner_changes_nothing(store: IdempotencyStore) -> None:
    store.heartbeat("w1")
    store.heartbeat("w2")
    assert lock(store, "ada", "w1")
    store.unlock_customer("ada", "w2")
    assert not lock(store, "ada", "w2")


def test_a_dead_or_expired_holders_customer_is_taken_over(
    store: IdempotencyStore, clock: FakeClock
) -> None:
    # Given w1 holding a customer, then silent for longer than dead_after
    store.heartbeat("w1")
    assert lock(store, "ada", "w1")
    clock.advance(DEAD_S + 1)
    # Then w2 takes it over
    store.heartbeat("w2")
    assert lock(store, "ada", "w2")
    # And a lease that ran out is free even while its holder heartbeats
    clock.advance(LEASE_S + 1)
    store.heartbeat("w2")
    store.heartbeat("w3")
    assert lock(store, "ada", "w3")


def test_a_claim_takes_the_customer_first(store: IdempotencyStore) -> None:
    # Given two live workers
    store.heartbeat("w1")
    store.heartbeat("w2")
    # When w1 claims a key for customer ada
    first = store.claim("k1", "fp-1", "w1", LEASE_S, DEAD_S, customer="ada")
    # Then it holds both; w2 cannot claim another of ada's keys, nor leaves a record trying
    assert first.status == ClaimStatus.ACQUIRED
    refused = store.claim("k2", "fp-1", "w2", LEASE_S, DEAD_S, customer="ada")
    assert refused.status == ClaimStatus.CUSTOMER_BUSY
    assert store.get("k2") is None
    # And once w1 lets ada go, w2's claim goes through
    store.unlock_customer("ada", "w1")
    wait_until(
        lambda: (
            store.claim("k2", "fp-1", "w2", LEASE_S, DEAD_S, customer="ada").status
            == ClaimStatus.ACQUIRED
        ),
        5,
        "the unlock committed",
    )


def test_threads_acquire_each_key_once(store: IdempotencyStore) -> None:
    # Given 16 live workers' threads and 40 keys
    owners = [f"w{i}" for i in range(16)]
    for owner in owners:
        store.heartbeat(owner)
    keys = [f"k{i}" for i in range(40)]
    start = threading.Barrier(len(owners))

    def claim_all(owner: str) -> list[tuple[str, ClaimStatus]]:
        start.wait(timeout=30)
        return [(key, claim(store, key, owner).status) for key in keys]

    # When they all claim every key at once
    with ThreadPoolExecutor(len(owners)) as pool:
        results = [r for batch in pool.map(claim_all, owners) for r in batch]
    # Then each key was acquired exactly once and busy for everyone else
    acquired = Counter(key for key, status in results if status == ClaimStatus.ACQUIRED)
    assert acquired == Counter(keys)
    assert Counter(status for _, status in results)[ClaimStatus.BUSY] == 40 * 15


def test_sqlite_connections_of_ended_threads_are_closed(tmp_path: Path) -> None:
    # Given a SQLite store (a connection per reading thread; PostgreSQL pools them, see
    # test_store_pool.py) used by the opening thread and by four more threads
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    backend: Any = store
    store.get("k")
    with ThreadPoolExecutor(4) as pool:
        barrier = threading.Barrier(4)
        list(pool.map(lambda i: (barrier.wait(timeout=30), store.get(f"k{i}")), range(4)))
        assert backend.open_connections() == 5
    # When those threads end
    # Then their connections are closed and only the opening thread's remains
    wait_until(lambda: backend.open_connections() == 1, 10, "thread connections closed")
    store.close()
    assert backend.open_connections() == 0


def claim_in_process(url: str, owner: str, keys: list[str], start: Any, out: Any) -> None:
    store = open_store(url)
    store.heartbeat(owner)
    start.wait(timeout=60)
    out.put([(key, str(store.claim(key, "fp", owner, LEASE_S, DEAD_S).status)) for key in keys])
    store.close()


def test_processes_acquire_each_key_once(store_url: str) -> None:
    # Given two separate processes with their own connections, creating the store at once
    ctx = multiprocessing.get_context("spawn")
    keys = [f"k{i}" for i in range(200)]
    start, out = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(target=claim_in_process, args=(store_url, f"p{i}", keys, start, out))
        for i in range(2)
    ]
    # When both claim the same keys at the same moment
    for proc in procs:
        proc.start()
    try:
        results = [r for _ in procs for r in out.get(timeout=120)]
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    # Then every key was acquired by exactly one of them
    acquired = Counter(key for key, status in results if status == ClaimStatus.ACQUIRED)
    assert acquired == Counter(keys)
    assert all(proc.exitcode == 0 for proc in procs)


def test_records_survive_reopening(store_url: str, clock: FakeClock) -> None:
    # Given a store with a succeeded key, closed
    first = open_store(store_url, clock=clock)
    first.claim("k1", "fp", "w1", LEASE_S, DEAD_S)
    first.complete("k1", "w1", True, b"event")
    first.close()
    # When it is opened again
    second = open_store(store_url, clock=clock)
    try:
        result = second.claim("k1", "fp", "w2", LEASE_S, DEAD_S)
    finally:
        second.close()
    # Then the result is still there
    assert (result.status, result.event) == (ClaimStatus.SUCCEEDED, b"event")


def test_sqlite_file_is_in_wal_mode(tmp_path: Path) -> None:
    # Given a store opened on a file
    path = tmp_path / "wal.db"
    open_store(f"sqlite:///{path}").close()
    # When another connection inspects the file
    with sqlite3.connect(path) as conn:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    # Then the database is in WAL mode (a persistent property of the file)
    assert mode == "wal"


def test_sqlite_relative_and_memory_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a relative URL and an in-memory one
    monkeypatch.chdir(tmp_path)
    relative = open_store("sqlite:///relative.db")
    memory = open_store("sqlite:///:memory:")
    try:
        # When each is used, the memory store from several threads
        relative.claim("k", "fp", "w", LEASE_S, DEAD_S)
        with ThreadPoolExecutor(4) as pool:
            statuses = list(
                pool.map(lambda k: memory.claim(k, "fp", "w", LEASE_S, DEAD_S), ["a", "b"] * 4)
            )
        # Then the file lives in the working directory and memory keys are claimed once each
        assert (tmp_path / "relative.db").exists()
        assert [c.status for c in statuses].count(ClaimStatus.ACQUIRED) == 2
    finally:
        relative.close()
        memory.close()


def test_unopenable_sqlite_store_raises_store_error(tmp_path: Path) -> None:
    # Given a path in a directory that does not exist
    # When the store is opened / Then a StoreError names the path
    with pytest.raises(StoreError, match="missing"):
        open_store(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")


@pytest.mark.postgres
def test_store_error_hides_the_password() -> None:
    # Given PostgreSQL URLs with a wrong, recognisable password, in the userinfo or the query
    base = psycopg.conninfo.conninfo_to_dict(base_pg_url())
    server = f"{base.get('host')}:{base.get('port')}/{base.get('dbname')}"
    urls = [
        f"postgresql://{base.get('user')}:Sup3r-s3cret@{server}",
        f"postgresql://{base.get('user')}@{server}?password=Sup3r-s3cret",
    ]
    for url in urls:
        # When the store is opened
        with pytest.raises(StoreError) as caught:
            open_store(url)
        # Then the error says where it failed but never shows the password
        assert "Sup3r-s3cret" not in str(caught.value)
        assert "Sup3r-s3cret" not in repr(caught.value)
        assert str(base.get("host")) in str(caught.value)


@pytest.mark.postgres
def test_postgres_reconnects_after_a_broken_connection(pg_url: str, clock: FakeClock) -> None:
    # Given a store whose server connections are all killed by the server
    name = f"store-test-{id(clock)}"
    store = open_store(f"{pg_url}&application_name={name}", clock=clock)
    try:
        store.claim("k1", "fp", "w1", LEASE_S, DEAD_S)
        with psycopg.connect(base_pg_url(), autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (name,),
            ).fetchone()
        assert killed is not None and killed[0] >= 1
        # When the store is used again
        result = store.claim("k2", "fp", "w1", LEASE_S, DEAD_S)
        # Then it dropped the broken connections, reconnected and the claim went through
        assert result.status == ClaimStatus.ACQUIRED
    finally:
        store.close()
