"""Group commit: writes from many threads, batched into one transaction, each answered alone."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.wait import wait_until
from worker.store import StoreError
from worker.store.group_commit import GroupCommitter

WAIT_S = 10.0


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "g.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")
    return path


@pytest.fixture
def committer(db: Path) -> Iterator[GroupCommitter]:
    lock = os.open(str(db) + ".writer-lock", os.O_RDWR | os.O_CREAT)

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(db, isolation_level=None, check_same_thread=False)

    writer = GroupCommitter(connect, lock, lambda exc: StoreError(f"store g.db: {exc}"))
    yield writer
    writer.close()
    os.close(lock)


def rows(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT k, v FROM t").fetchall())


def insert(key: str, value: int) -> Any:
    def work(conn: sqlite3.Connection) -> int:
        return conn.execute("INSERT INTO t VALUES (?, ?)", (key, value)).rowcount

    return work


def in_threads(committer: GroupCommitter, works: dict[str, Any]) -> dict[str, Any]:
    """Each work on its own thread; what each write returned or raised."""
    outcomes: dict[str, Any] = {}

    def call(name: str) -> None:
        try:
            outcomes[name] = committer.write(works[name])
        except Exception as exc:
            outcomes[name] = exc

    threads = [threading.Thread(target=call, args=(name,)) for name in works]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
    return outcomes


def test_writes_from_many_threads_are_all_committed_each_with_its_result(
    committer: GroupCommitter, db: Path
) -> None:
    # When 40 threads write one row each at the same time
    outcomes = in_threads(committer, {f"k{i}": insert(f"k{i}", i) for i in range(40)})
    # Then every write returned its own result, and every row is in the file
    assert outcomes == {f"k{i}": 1 for i in range(40)}
    assert rows(db) == {f"k{i}": i for i in range(40)}


def test_a_failing_write_fails_alone_and_its_batch_still_commits(
    committer: GroupCommitter, db: Path
) -> None:
    # Given the writer held inside a write, so that the next writes queue into one batch
    entered, release = threading.Event(), threading.Event()

    def held(conn: sqlite3.Connection) -> None:
        entered.set()
        release.wait(WAIT_S)

    holder = threading.Thread(target=committer.write, args=(held,))
    holder.start()
    assert entered.wait(WAIT_S)
    works = {"a": insert("a", 1), "dup": insert("a", 2), "b": insert("b", 3)}
    results: dict[str, Any] = {}
    waiter = threading.Thread(target=lambda: results.update(in_threads(committer, works)))
    waiter.start()
    wait_until(lambda: committer.queued() == 3, WAIT_S, "three writes queued")
    # When the batch runs: "dup" violates the primary key that "a" just took
    release.set()
    waiter.join(WAIT_S)
    holder.join(WAIT_S)
    # Then only that write failed, as a StoreError naming the store; the others committed
    assert results["a"] == 1 and results["b"] == 1
    assert isinstance(results["dup"], StoreError)
    assert "g.db" in str(results["dup"])
    assert rows(db) == {"a": 1, "b": 3}


def test_an_exception_from_the_work_reaches_its_caller_unchanged(
    committer: GroupCommitter, db: Path
) -> None:
    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t VALUES ('x', 1)")
        raise ValueError("a bug in the work")

    # When a write raises after changing a row
    with pytest.raises(ValueError, match="a bug in the work"):
        committer.write(broken)
    # Then its change was rolled back, and the writer keeps working
    assert committer.write(insert("y", 2)) == 1
    assert rows(db) == {"y": 2}


def test_after_close_writes_are_refused_with_a_store_error(
    committer: GroupCommitter, db: Path
) -> None:
    # Given a write committed, then the committer closed
    committer.write(insert("before", 1))
    committer.close()
    # When another write comes; Then it is refused, and nothing was lost before it
    with pytest.raises(StoreError, match="closed"):
        committer.write(insert("after", 2))
    assert rows(db) == {"before": 1}


def test_a_submitted_write_is_committed_in_order_without_a_waiter(
    committer: GroupCommitter, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # When a write is submitted without waiting, one that fails too, then one waited for
    committer.submit(insert("fire", 1))
    committer.submit(insert("fire", 2))
    assert committer.write(insert("after", 3)) == 1
    # Then the first is in the file by the time the later write returns, the failing one
    # only logged (nobody to raise it to)
    assert rows(db) == {"fire": 1, "after": 3}
    assert "a store write nobody waited for failed" in caplog.text


def test_a_whole_batch_failing_is_raised_to_waiters_and_logged_for_the_others(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a store whose database cannot be opened (a disk gone, a path removed)
    lock = os.open(str(db) + ".writer-lock", os.O_RDWR | os.O_CREAT)

    def connect() -> sqlite3.Connection:
        raise sqlite3.OperationalError("unable to open database file")

    writer = GroupCommitter(connect, lock, lambda exc: StoreError(f"store g.db: {exc}"))
    try:
        # When a write is submitted without a waiter, then one is waited for
        writer.submit(insert("fire", 1))
        with pytest.raises(StoreError, match="unable to open"):
            writer.write(insert("waited", 2))
    finally:
        writer.close()
        os.close(lock)
    # Then the waiter got the error, and the unwaited write's failure was logged
    assert "a store write nobody waited for failed: OperationalError" in caplog.text
