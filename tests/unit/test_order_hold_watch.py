"""Stuck holds (docs/ordering.md, "Stuck holds"): an overdue hold is reported, one whose
holder already finished is released, one an operator released is followed; on the real
store (SQLite and PostgreSQL) with an injected clock."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, cast

import pytest

from contracts import UpdateCustomerProfile
from tests.fixtures.stores import FakeClock
from worker.decision import Decision, Envelope
from worker.hold_watch import FINISHED_HOLDER, OPERATOR, HoldWatch, overdue_after_s
from worker.parking import Holds, OrderGate
from worker.store import IdempotencyStore
from worker.store.order import Backend
from worker.store.order_upkeep import OrderUpkeep

KEY, HOLDER, PARTITION = "alice", "alice-p0", 2
OVERDUE_S = overdue_after_s([0.3, 5.0], 10.0)


class Recorded:
    """The order metrics this module reports, recorded."""

    def __init__(self) -> None:
        self.overdue = -1
        self.released: Counter[str] = Counter()
        self.returned = 0

    def holds_overdue(self, count: int) -> None:
        self.overdue = count

    def hold_released(self, by: str) -> None:
        self.released[by] += 1

    def released_holder_returned(self) -> None:
        self.returned += 1


@pytest.fixture
def upkeep(store: IdempotencyStore, clock: FakeClock) -> OrderUpkeep:
    return OrderUpkeep(cast(Backend, store), clock=clock)


def held(upkeep: OrderUpkeep) -> Holds:
    """The owner's view: KEY held by HOLDER, one command parked behind it."""
    holds = Holds(upkeep)
    holds.set(KEY, PARTITION, HOLDER)
    upkeep.park(KEY, PARTITION, "UpdateCustomerProfile", b"", b'{"secret": "s3cret-pass"}')
    return holds


def watch(upkeep: OrderUpkeep, holds: Holds, store: IdempotencyStore, clock: FakeClock) -> Any:
    metrics = Recorded()
    return HoldWatch(upkeep, holds, store.get, OVERDUE_S, metrics, clock), metrics


def test_overdue_is_overdue_after_the_longest_tier_and_the_margin() -> None:
    assert OVERDUE_S == 15.0


def test_a_hold_older_than_the_longest_tier_is_reported_overdue_once(
    upkeep: OrderUpkeep,
    store: IdempotencyStore,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a customer held behind a command in a delay tier
    holds = held(upkeep)
    hold_watch, metrics = watch(upkeep, holds, store, clock)
    # When it waits as long as the longest tier plus the margin, it is not overdue yet
    clock.advance(OVERDUE_S)
    assert hold_watch.check([PARTITION]) == []
    assert metrics.overdue == 0
    # Then a moment later it is: counted, and logged once with what to do
    clock.advance(1)
    with caplog.at_level(logging.WARNING, logger="worker.hold_watch"):
        assert hold_watch.check([PARTITION]) == []
        assert hold_watch.check([PARTITION]) == []
    assert metrics.overdue == 1
    lines = [r for r in caplog.records if r.getMessage().startswith("hold overdue")]
    assert len(lines) == 1
    fields = lines[0].fields  # type: ignore[attr-defined]
    assert fields["holder"] == HOLDER and fields["parked"] == 1
    assert fields["action"] == f"provisioner order release {KEY}"
    assert "s3cret-pass" not in caplog.text
    # And a process that does not own the partition does not count it
    assert hold_watch.check([PARTITION + 1]) == [] and metrics.overdue == 0


def test_an_overdue_hold_whose_holder_finished_is_released(
    upkeep: OrderUpkeep, store: IdempotencyStore, clock: FakeClock
) -> None:
    # Given a held customer whose holder meanwhile finished (it ran elsewhere)
    holds = held(upkeep)
    hold_watch, metrics = watch(upkeep, holds, store, clock)
    store.claim(HOLDER, "fp", "other-worker", 60, 20)
    store.complete(HOLDER, "other-worker", True, b"{}")
    # When the hold is overdue
    clock.advance(OVERDUE_S + 1)
    to_settle = hold_watch.check([PARTITION])
    # Then it is released (not reported), and its parked command may run
    assert to_settle == [KEY] and metrics.overdue == 0
    assert hold_watch.settle(KEY) is True
    assert upkeep.hold(KEY) == (None, PARTITION)
    assert holds.begin_drain(KEY) == PARTITION
    assert metrics.released == Counter({FINISHED_HOLDER: 1})


def test_an_overdue_hold_whose_holder_is_still_pending_stays(
    upkeep: OrderUpkeep, store: IdempotencyStore, clock: FakeClock
) -> None:
    # Given a held customer whose holder was given back for a delayed retry
    holds = held(upkeep)
    hold_watch, _metrics = watch(upkeep, holds, store, clock)
    store.claim(HOLDER, "fp", "me", 60, 20)
    store.release(HOLDER, "me")
    # When the hold is overdue, it is only reported
    clock.advance(OVERDUE_S + 1)
    assert hold_watch.check([PARTITION]) == []
    assert hold_watch.settle(KEY) is False
    assert upkeep.hold(KEY) == (HOLDER, PARTITION)


def test_an_operators_release_is_followed_unless_the_holder_held_again(
    upkeep: OrderUpkeep, store: IdempotencyStore, clock: FakeClock
) -> None:
    # Given a held customer, released by an operator (`provisioner order release`)
    holds = held(upkeep)
    hold_watch, metrics = watch(upkeep, holds, store, clock)
    assert upkeep.release(KEY) == HOLDER
    assert upkeep.release(KEY) is None  # already draining
    # When the owner looks (before the hold is overdue): the release is followed
    assert hold_watch.check([PARTITION]) == [KEY]
    assert hold_watch.settle(KEY) is True
    assert holds.get(KEY) is not None and holds.get(KEY).holder is None  # type: ignore[union-attr]
    assert metrics.released == Counter({OPERATOR: 1})
    # And given another release, which the holder beat: back, and in a delay tier again
    holds.set(KEY, PARTITION, HOLDER)
    upkeep.release(KEY)
    holds.set(KEY, PARTITION, HOLDER)
    # Then the customer stays held behind it
    assert hold_watch.check([PARTITION]) == []
    assert hold_watch.settle(KEY) is False
    assert upkeep.hold(KEY) == (HOLDER, PARTITION)


class Runs:
    """The executor behind the gate: records what ran."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    def process(self, envelope: Envelope) -> Decision:
        assert envelope.command is not None
        self.ran.append(envelope.command.idempotency_key)
        return Decision("UpdateCustomerProfile", "succeeded")


def delayed(key: str) -> Envelope:
    command = UpdateCustomerProfile(idempotency_key=key, customer=KEY, first_name="Ada")
    return Envelope(command, None, None, delayed_attempts=1)


def test_a_released_holder_that_comes_back_runs_after_them_with_a_warning(
    upkeep: OrderUpkeep, store: IdempotencyStore, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a hold released by an operator, whose parked commands all ran (no hold left)
    holds = held(upkeep)
    upkeep.release(KEY)
    upkeep.unpark(KEY, 1)
    holds.adopt_release(KEY)
    assert holds.drop_if_empty(KEY)
    runs, metrics = Runs(), Recorded()
    gate = OrderGate(runs, upkeep, holds, lambda _p, _b: delayed("x"), metrics)  # type: ignore[arg-type]
    # When the holder's delay-tier copy shows up after all
    with caplog.at_level(logging.WARNING, logger="worker.parking"):
        decision = gate.process(delayed(HOLDER), KEY, PARTITION, "rk", None, b"{}")
    # Then it runs, as an ordinary command, and says so once
    assert decision.outcome == "succeeded" and runs.ran == [HOLDER]
    assert metrics.returned == 1
    assert "a released holder came back" in caplog.text
    assert upkeep.take_released(HOLDER) is None


def test_the_holds_of_some_partitions_are_listed_from_the_store(
    upkeep: OrderUpkeep, clock: FakeClock
) -> None:
    # Given holds in partitions 2, 12 and 120
    for partition in (2, 12, 120):
        upkeep.set_hold(f"key-{partition}", partition, f"holder-{partition}")
        clock.advance(1)
    # When a partition owner asks for some of them / Then it gets those, oldest first
    assert [row.partition for row in upkeep.holds([120, 2])] == [2, 120]
    assert [row.order_key for row in upkeep.holds([12])] == ["key-12"]
    assert upkeep.holds([]) == [] and len(upkeep.holds()) == 3
