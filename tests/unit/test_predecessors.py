"""A returned delivery waits for its predecessor (docs/ordering.md, "Returned deliveries out
of order"): set aside in the pool, released when the predecessor ends here, when the store
says it passed, or after the bounded wait (an injected clock)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.fixtures.stores import FakeClock
from tests.fixtures.wait import wait_until
from worker.ordering import KeyedSerialExecutor, SetAside
from worker.predecessors import Predecessors


class Metrics:
    def __init__(self) -> None:
        self.awaiting, self.given_up = 0, 0

    def awaiting_predecessor(self, count: int) -> None:
        self.awaiting = count

    def predecessor_wait_given_up(self) -> None:
        self.given_up += 1


class Rig:
    """A real pool, a ``Predecessors`` with a store stand-in (``passed``) and a fake clock;
    each command is a task on its customer's key, as the consumer of partitions runs it."""

    def __init__(self, wait_s: float = 30.0) -> None:
        self.pool = KeyedSerialExecutor(4)
        self.passed: set[str] = set()
        self.clock = FakeClock()
        self.metrics = Metrics()
        self.waits = Predecessors(
            lambda _key, after: after in self.passed,
            self.pool.resume,
            wait_s,
            self.metrics,
            self.clock,
        )
        self.ran: list[str] = []
        self.done: list[str] = []
        self._lock = threading.Lock()

    def submit(self, own: str, after: str | None, returned: bool = True, key: str = "ada") -> None:
        def task() -> str:
            self.waits.check(own, key, own, after, returned)
            with self._lock:
                self.ran.append(own)
                self.passed.add(own)  # its outcome recorded, as the executor does
            self.waits.finished(key, own)
            return own

        self.pool.submit(key, task, lambda f: self.done.append(f.result()))

    def wait_done(self, count: int) -> None:
        wait_until(lambda: len(self.done) == count, 5, f"{count} tasks done")


@pytest.fixture
def rig() -> Any:
    rig = Rig()
    yield rig
    rig.waits.stop()
    rig.pool.shutdown(wait=True)


def test_a_returned_command_ahead_of_its_predecessor_runs_right_after_it(rig: Rig) -> None:
    # Given c3 returned first (c2 not passed), then c1 (its predecessor passed), c2, and c4
    # delivered for the first time, naming c3
    rig.passed.add("c0")
    rig.submit("c3", "c2")
    rig.submit("c1", "c0")
    rig.submit("c2", "c1")
    rig.submit("c4", "c3", returned=False)
    # When the pool runs them / Then they run in chain order, c3 before c4
    rig.wait_done(4)
    assert rig.ran == ["c1", "c2", "c3", "c4"]
    assert rig.metrics.awaiting == 0


def test_a_first_delivery_never_asks_the_store() -> None:
    asked: list[str] = []
    waits = Predecessors(lambda _k, after: asked.append(after) or False, lambda _t: 0)
    waits.check("t", "ada", "c2", "c1", returned=False)  # returns: it may run
    assert asked == []


def test_a_predecessor_that_passed_in_another_process_is_found_by_the_look(rig: Rig) -> None:
    # Given c2 returned and set aside, its predecessor not passed
    rig.submit("c2", "c1")
    wait_until(lambda: rig.waits.waiting() == 1, 5, "c2 aside")
    rig.waits.look()
    assert rig.ran == []
    # When the store has c1's outcome (it ran elsewhere) and the store is looked at
    rig.passed.add("c1")
    rig.waits.look()
    # Then c2 runs, without a give-up
    rig.wait_done(1)
    assert rig.ran == ["c2"] and rig.metrics.given_up == 0


def test_a_predecessor_that_never_comes_is_given_up_after_the_wait(rig: Rig) -> None:
    # Given c2 aside, waiting for c1 which never comes, and c3 behind it
    rig.submit("c2", "c1")
    rig.submit("c3", "c2", returned=False)
    wait_until(lambda: rig.waits.waiting() == 2, 5, "both aside")
    assert rig.metrics.awaiting == 2
    # When the clock passes the wait, short of it first
    rig.clock.advance(29.9)
    rig.waits.look()
    assert rig.ran == []
    rig.clock.advance(0.1)
    rig.waits.look()
    # Then c2 runs, then c3, once each; the give-up is counted once
    rig.wait_done(2)
    assert rig.ran == ["c2", "c3"]
    assert rig.metrics.given_up == 1 and rig.metrics.awaiting == 0


def test_the_pool_resumes_a_task_released_before_it_stepped_aside() -> None:
    # Given a task that is released by another thread while it is still stepping aside
    pool = KeyedSerialExecutor(2)
    runs: list[int] = []
    done: list[Any] = []

    def task() -> None:
        runs.append(1)
        if len(runs) == 1:
            pool.resume(["t"])  # released before the pool saw it step aside
            raise SetAside("t")

    pool.submit("ada", task, lambda f: done.append(f))
    # Then it runs again and ends once
    wait_until(lambda: len(done) == 1, 5, "the task done")
    pool.shutdown(wait=True)
    assert len(runs) == 2


def test_dropping_waiting_tasks_forgets_those_set_aside() -> None:
    pool = KeyedSerialExecutor(1)
    done: list[Any] = []

    def aside() -> None:
        raise SetAside("t")

    pool.submit("ada", aside, done.append)
    wait_until(lambda: pool.drop_waiting() == 1, 5, "the task aside")
    assert pool.resume(["t"]) == 0 and done == []
    pool.shutdown(wait=True)


def test_a_delivery_is_given_back_once_on_a_stall_and_its_wait_counts_from_the_first(
    rig: Rig,
) -> None:
    # Given c2 waiting on partition 3 since t=0
    with pytest.raises(SetAside):
        rig.waits.check("d1", "ada", "c2", "c1", returned=True, partition=3)
    assert not rig.waits.stalled(3, 1.0)
    # When a second passes, it is stalled and given back
    rig.clock.advance(1.0)
    assert rig.waits.stalled(3, 1.0)
    assert [w.own for w in rig.waits.take(3, again=False)] == ["c2"]
    assert rig.waits.waiting() == 0
    # Then, redelivered 20 s later, it waits again and is not given back a second time
    rig.clock.advance(20.0)
    with pytest.raises(SetAside):
        rig.waits.check("d2", "ada", "c2", "c1", returned=True, partition=3)
    rig.clock.advance(1.0)
    assert rig.waits.take(3, again=False) == []
    # And the bound counts from its first wait: given up at t=30, not t=51
    rig.clock.advance(8.0)
    rig.waits.look()
    assert rig.metrics.given_up == 1
    # (a hand-over gives back whatever waits, given back before or not)
    with pytest.raises(SetAside):
        rig.waits.check("d3", "ada", "c2", "c1", returned=True, partition=3)
    assert [w.own for w in rig.waits.take(3, again=True)] == ["c2"]
