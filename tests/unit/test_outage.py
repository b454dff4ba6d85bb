"""A partition's command rides out a short store outage in place, within its budget."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from worker.outage import FIRST_BACKOFF_S, MAX_BACKOFF_S, ride_out_store_outage
from worker.store import StoreError


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def failing(times: int) -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []

    def task() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise StoreError("connection refused")
        return "decided"

    return calls, task


def test_an_outage_shorter_than_the_budget_is_waited_out_in_place() -> None:
    # Given a store that fails three times, then answers
    clock = FakeClock()
    calls, task = failing(3)
    # When the task rides it out with a 9 s budget
    result = ride_out_store_outage(task, 9.0, sleep=clock.sleep, monotonic=clock.monotonic)
    # Then it ran four times with a growing backoff and returned the decision
    assert result == "decided"
    assert len(calls) == 4
    assert clock.slept == [FIRST_BACKOFF_S, FIRST_BACKOFF_S * 2, FIRST_BACKOFF_S * 4]


def test_an_outage_longer_than_the_budget_raises_before_the_budget_is_exceeded() -> None:
    # Given a store that never answers
    clock = FakeClock()
    calls, task = failing(10_000)
    # When the task rides it out with a 9 s budget
    with pytest.raises(StoreError):
        ride_out_store_outage(task, 9.0, sleep=clock.sleep, monotonic=clock.monotonic)
    # Then it gave up without waiting past the budget, the backoff capped
    assert clock.now - 100.0 <= 9.0
    assert max(clock.slept) == MAX_BACKOFF_S
    assert len(calls) > 3


def test_no_budget_means_no_wait() -> None:
    clock = FakeClock()
    calls, task = failing(1)
    with pytest.raises(StoreError):
        ride_out_store_outage(task, 0.0, sleep=clock.sleep, monotonic=clock.monotonic)
    assert calls == [1]
    assert clock.slept == []


def test_other_errors_are_not_ridden_out() -> None:
    def task() -> str:
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        ride_out_store_outage(task, 9.0, sleep=lambda s: None)
