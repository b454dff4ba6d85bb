"""Per-customer order on the pool: one at a time per key, parallel across keys."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

from tests.fixtures.wait import wait_until
from worker.ordering import KeyedSerialExecutor


def test_same_key_runs_one_at_a_time_in_submission_order() -> None:
    # Given a pool of 4 threads and 20 tasks for one key
    pool = KeyedSerialExecutor(4)
    order: list[int] = []
    running = {"now": 0, "max": 0}
    lock = threading.Lock()
    done: list[int] = []

    def task(i: int) -> int:
        with lock:
            running["now"] += 1
            running["max"] = max(running["max"], running["now"])
        order.append(i)
        with lock:
            running["now"] -= 1
        return i

    # When they are submitted
    for i in range(20):
        pool.submit("ada", lambda i=i: task(i), lambda f: done.append(f.result()))
    wait_until(lambda: len(done) == 20, 10, "all tasks")
    pool.shutdown(wait=True)
    # Then they ran in order, never two at once
    assert order == list(range(20))
    assert done == list(range(20))
    assert running["max"] == 1


def test_different_keys_run_in_parallel() -> None:
    # Given two keys whose first tasks wait for each other
    pool = KeyedSerialExecutor(2)
    a_started, b_started = threading.Event(), threading.Event()
    results: list[Any] = []

    def a() -> bool:
        a_started.set()
        return b_started.wait(5)

    def b() -> bool:
        b_started.set()
        return a_started.wait(5)

    # When both are submitted
    pool.submit("a", a, lambda f: results.append(f.result()))
    pool.submit("b", b, lambda f: results.append(f.result()))
    wait_until(lambda: len(results) == 2, 10, "both tasks")
    pool.shutdown(wait=True)
    # Then each saw the other running at the same time
    assert results == [True, True]


def test_waiting_tasks_can_be_dropped_while_running_ones_finish() -> None:
    pool = KeyedSerialExecutor(1)
    gate = threading.Event()
    finished: list[str] = []

    def blocker() -> str:
        gate.wait(5)
        return "first"

    pool.submit("k", blocker, lambda f: finished.append(f.result()))
    pool.submit("k", lambda: "second", lambda f: finished.append(f.result()))
    # When waiting work is dropped (a lost channel) before the first finishes
    assert pool.drop_waiting() == 1
    gate.set()
    wait_until(lambda: finished == ["first"], 5, "first task")
    pool.shutdown(wait=True)
    # Then only the running task completed
    assert finished == ["first"]


def test_exception_in_task_still_releases_the_key() -> None:
    pool = KeyedSerialExecutor(2)
    outcomes: list[str] = []

    def boom() -> None:
        raise RuntimeError("bug")

    def record(f: Future[Any]) -> None:
        outcomes.append("error" if f.exception() else str(f.result()))

    pool.submit("k", boom, record)
    pool.submit("k", lambda: "next", record)
    wait_until(lambda: len(outcomes) == 2, 5, "both")
    pool.shutdown(wait=True)
    assert outcomes == ["error", "next"]
