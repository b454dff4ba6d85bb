"""A partition's command rides out a store outage in place while its delivery is still the
process's to decide, and gives it back (unacked) once it is not."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from worker.outage import (
    FIRST_BACKOFF_S,
    MAX_BACKOFF_S,
    OutageAbandonedError,
    ride_out_store_outage,
)
from worker.store import StoreError


class FakeClock:
    """Time moves only when the ride-out waits; ``fence_at`` ends the channel's epoch."""

    def __init__(self, fence_at: float = float("inf")) -> None:
        self.now = 0.0
        self.fence_at = fence_at
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> bool:
        self.slept.append(seconds)
        self.now += seconds
        return False

    def channel_open(self) -> bool:
        return self.now < self.fence_at


def failing(times: int) -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []

    def task() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise StoreError("connection refused")
        return "decided"

    return calls, task


def test_an_outage_is_waited_out_in_place_while_the_channel_is_open() -> None:
    # Given a store that fails three times, then answers
    clock = FakeClock()
    calls, task = failing(3)
    # When the task rides it out on an open channel
    result = ride_out_store_outage(task, clock.channel_open, clock.sleep)
    # Then it ran four times with a growing backoff and returned the decision
    assert result == "decided"
    assert len(calls) == 4
    assert clock.slept == [FIRST_BACKOFF_S, FIRST_BACKOFF_S * 2, FIRST_BACKOFF_S * 4]


def test_a_long_outage_is_waited_out_for_as_long_as_the_channel_stays_open() -> None:
    # Given a store down for ten minutes of (fake) time, on a channel that stays open
    clock = FakeClock()
    calls, task = failing(300)
    # When the task rides it out
    result = ride_out_store_outage(task, clock.channel_open, clock.sleep)
    # Then it is decided without a time limit of its own, the backoff capped
    assert result == "decided"
    assert clock.now > 500 and max(clock.slept) == MAX_BACKOFF_S
    assert len(calls) == 301


def test_once_the_channel_is_closed_the_command_is_given_back_without_running_again() -> None:
    # Given a store that never answers, and the partition's lease fencing after 10 s
    clock = FakeClock(fence_at=10.0)
    calls, task = failing(10_000)
    # When the task rides it out
    with pytest.raises(OutageAbandonedError):
        ride_out_store_outage(task, clock.channel_open, clock.sleep)
    # Then it stops within one backoff of the close, and never ran once the channel was gone
    assert 10.0 <= clock.now <= 10.0 + MAX_BACKOFF_S
    assert len(calls) == len(clock.slept)


def test_a_stop_requested_gives_the_command_back_at_once() -> None:
    # Given a process stopping (its delivery goes back with the connection's close)
    clock = FakeClock(fence_at=0.0)
    calls, task = failing(1)
    # When the task meets the outage
    with pytest.raises(OutageAbandonedError):
        ride_out_store_outage(task, clock.channel_open, clock.sleep)
    # Then it neither waited nor ran again
    assert calls == [1]
    assert clock.slept == []


def test_other_errors_are_not_ridden_out() -> None:
    def task() -> str:
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        ride_out_store_outage(task, lambda: True, lambda s: None)
