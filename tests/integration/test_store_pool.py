"""The PostgreSQL store's bounded pool: many threads, few connections, bounded waits."""

from __future__ import annotations

import functools
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from tests.fixtures.postgres import base_pg_url
from tests.fixtures.wait import wait_until
from worker.store import ClaimStatus, StoreError, open_store
from worker.store.pg_statements import Batched
from worker.store.postgres import PostgresStore

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

LEASE_S = 60.0
DEAD_S = 20.0
THREADS = 16


@pytest.fixture
def app_name() -> str:
    return f"pool-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def admin() -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(base_pg_url(), autocommit=True, connect_timeout=5) as conn:
        yield conn


def backends(admin: psycopg.Connection[Any], app_name: str) -> int:
    row = admin.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (app_name,)
    ).fetchone()
    return int(row[0]) if row else 0


def test_many_threads_share_a_pool_of_its_size(
    pg_url: str, app_name: str, admin: psycopg.Connection[Any]
) -> None:
    # Given a store with a pool of two connections
    store = open_store(f"{pg_url}&application_name={app_name}", pool_size=2)
    try:
        store.heartbeat("w1")
        start = threading.Barrier(THREADS)
        peak = [0]

        def claim(index: int) -> ClaimStatus:
            start.wait(timeout=30)
            status = store.claim(f"k{index}", "fp", "w1", LEASE_S, DEAD_S).status
            peak[0] = max(peak[0], backends(admin, app_name))
            return status

        # When sixteen threads claim at the same moment
        with ThreadPoolExecutor(THREADS) as pool:
            statuses = list(pool.map(claim, range(THREADS)))
        # Then every claim went through on at most two server connections
        assert Counter(statuses) == Counter({ClaimStatus.ACQUIRED: THREADS})
        assert 1 <= peak[0] <= 2
        assert backends(admin, app_name) <= 2
    finally:
        store.close()
    # And closing the store closes them
    wait_until(lambda: backends(admin, app_name) == 0, 10, "the pool's connections closed")


def test_a_thread_waits_for_a_connection_only_as_long_as_the_pool_wait(pg_url: str) -> None:
    # Given a store with one connection, held by someone else
    store = open_store(pg_url, pool_size=1, pool_wait_s=0.2)
    assert isinstance(store, PostgresStore)
    try:
        # When a thread needs the store
        # Then it gets a StoreError naming the wait instead of hanging
        with (
            store._pool.connection(),
            pytest.raises(StoreError, match=r"no connection within 0\.2 s"),
        ):
            store.get("k1")
        # And once the connection is free the store works again
        assert store.get("k1") is None
    finally:
        store.close()


def test_every_pooled_connection_has_server_side_timeouts(pg_url: str) -> None:
    # Given a store
    store = open_store(pg_url, pool_size=1)
    assert isinstance(store, PostgresStore)
    try:
        # When a pooled connection's settings are read
        with store._pool.connection() as conn:
            row = conn.execute(
                "SELECT current_setting('statement_timeout'),"
                " current_setting('idle_in_transaction_session_timeout')"
            ).fetchone()
            info = conn.info.get_parameters()
        # Then statements and idle transactions are bounded, and so is connecting
        assert row is not None and "0" not in (row[0], row[1])
        assert int(info["connect_timeout"]) > 0
        assert int(info["tcp_user_timeout"]) > 0
    finally:
        store.close()


def waiting_for_a_connection(store: PostgresStore) -> bool:
    """The writer took the first write alone and waits for the pool's only connection."""
    return not store._writer._queue and store._pool.get_stats().get("requests_waiting") == 1


def as_one_batch(
    store: PostgresStore,
    first: Callable[[], Any],
    rest: Sequence[Callable[[], Any]],
    held_first: Callable[[psycopg.Connection[Any]], Any] = lambda conn: None,
    at_release: Callable[[], Any] = lambda: None,
) -> None:
    """``first`` written while the pool's only connection is held (``held_first`` run on it
    beforehand), so that the writes of ``rest`` queue behind it; then the connection given
    back (``at_release`` just before), and the writer runs ``rest`` as one batch."""
    held = store._pool.getconn()
    threads = [threading.Thread(target=first)]
    try:
        held_first(held)
        threads[0].start()
        wait_until(lambda: waiting_for_a_connection(store), 10, "the writer busy")
        threads += [threading.Thread(target=write) for write in rest]
        for thread in threads[1:]:
            thread.start()
        wait_until(lambda: len(store._writer._queue) == len(rest), 10, "the writes queued")
        at_release()
    finally:
        store._pool.putconn(held)
    for thread in threads:
        thread.join(timeout=30)


def statements_noted(cls: Any) -> tuple[list[str], Callable[..., Any]]:
    """A stand-in for ``cls.execute`` that writes down each statement before sending it,
    and the list it writes to."""
    sent: list[str] = []
    execute = cls.execute

    def noted(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(str(query))
        return execute(self, query, *args, **kwargs)

    return sent, noted


def test_a_failing_write_fails_alone_and_the_rest_of_its_batch_commits(pg_url: str) -> None:
    # Given a store with one connection and one writer, kept busy while eight claims and one
    # bad write queue up
    store = open_store(pg_url, pool_size=1)
    assert isinstance(store, PostgresStore)
    store.heartbeat("w1")
    outcomes: dict[str, Any] = {}
    failing = Batched("provisioner_not_prepared", "SELECT 1 / 0")

    def claim(key: str) -> None:
        outcomes[key] = store.claim(key, "fp", "w1", LEASE_S, DEAD_S).status

    def bad_write() -> None:
        try:
            store._writer.write(failing, {})
        except StoreError as exc:
            outcomes["bad"] = exc

    try:
        # When the writer is free and runs them as one batch
        claims = [functools.partial(claim, f"k{i}") for i in range(8)]
        as_one_batch(store, functools.partial(claim, "first"), [*claims, bad_write])
        # Then the bad write failed with a store error and every claim was committed
        assert isinstance(outcomes.pop("bad"), StoreError)
        expected = {key: ClaimStatus.ACQUIRED for key in ["first", *(f"k{i}" for i in range(8))]}
        assert outcomes == expected
        assert all(store.get(f"k{i}") is not None for i in range(8))
    finally:
        store.close()


def test_a_batch_is_one_text_of_prepared_statements(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a store whose writer is held while claims of keys and customers queue up
    store = open_store(pg_url, pool_size=1)
    assert isinstance(store, PostgresStore)
    store.heartbeat("w1")
    sent, noted = statements_noted(psycopg.ClientCursor)
    claims: dict[str, Any] = {}

    def claim(key: str, customer: str | None) -> None:
        claims[key] = store.claim(key, "fp", "w1", LEASE_S, DEAD_S, customer=customer)

    try:
        # When the writer runs them as one batch
        rest = [functools.partial(claim, f"k{i}", f"c'{i}" if i % 2 else None) for i in range(1, 7)]
        noting = functools.partial(monkeypatch.setattr, psycopg.ClientCursor, "execute", noted)
        as_one_batch(store, functools.partial(claim, "k0", None), rest, at_release=noting)
        # Then they went as one text, each an EXECUTE of a prepared statement with its
        # values quoted (a quote in a customer's name included), and each got its own result
        assert len(sent) == 1, sent
        assert sent[0].count("EXECUTE provisioner_claim_") == 6
        assert sent[0].startswith("BEGIN") and sent[0].endswith("COMMIT")
        assert {k: c.status for k, c in claims.items()} == {
            f"k{i}": ClaimStatus.ACQUIRED for i in range(7)
        }
        # (the customer with a quote in its name is leased as named)
        other = store.claim("k9", "fp", "w2", LEASE_S, DEAD_S, customer="c'3")
        assert other.status is ClaimStatus.CUSTOMER_BUSY
    finally:
        monkeypatch.undo()
        store.close()


def test_a_command_costs_the_store_two_statements(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a store, and every statement its connections send written down
    store = open_store(pg_url, pool_size=1)
    sent, noted = statements_noted(psycopg.Connection)
    try:
        store.heartbeat("w1")
        monkeypatch.setattr(psycopg.Connection, "execute", noted)
        # When a command of a customer is claimed and its result stored
        claimed = store.claim("k1", "fp", "w1", LEASE_S, DEAD_S, customer="ada")
        stored = store.complete("k1", "w1", True, b"done", customer="ada")
        # Then that took one statement each (the customer's lease went with them)
        assert claimed.status is ClaimStatus.ACQUIRED and stored
        assert len(sent) == 2, sent
        assert "customer_leases" in sent[0] and "customer_leases" in sent[1]
    finally:
        monkeypatch.undo()
        store.close()


def test_missing_prepared_statements_turn_the_batches_into_pipelines(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a store whose only connection lost its prepared statements (as a server
    # connection behind a pooler in transaction mode has none)
    store = open_store(pg_url, pool_size=1)
    assert isinstance(store, PostgresStore)
    store.heartbeat("w1")
    outcomes: dict[str, Any] = {}

    def claim(key: str) -> None:
        outcomes[key] = store.claim(key, "fp", "w1", LEASE_S, DEAD_S).status

    def one_batch(keys: list[str], held_first: Callable[[Any], Any] = lambda conn: None) -> None:
        writes = [functools.partial(claim, key) for key in keys]
        as_one_batch(store, writes[0], writes[1:], held_first=held_first)

    try:
        with caplog.at_level("INFO", logger="worker.store.pg_batch"):
            # When a batch runs on it, and another batch after that
            one_batch(["a0", "a1", "a2", "a3"], lambda conn: conn.execute("DEALLOCATE ALL"))
            one_batch(["b0", "b1", "b2", "b3"])
        # Then every claim was committed, the cause was said once, and from then on the
        # batches went as a pipeline, which needs no statement of the worker's own
        expected = [f"{x}{i}" for x in "ab" for i in range(4)]
        assert outcomes == dict.fromkeys(expected, ClaimStatus.ACQUIRED)
        said = [r.message for r in caplog.records]
        assert sum("prepared statements are missing" in m for m in said) == 1, said
        assert sum("batch failed" in m for m in said) == 0, said
        assert store._writer._pipelined
    finally:
        store.close()
