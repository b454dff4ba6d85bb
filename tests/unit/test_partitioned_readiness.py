"""The consumer of partitions tells /readyz about partitions it owns and cannot consume."""

from __future__ import annotations

from typing import Any, cast

import pytest

from worker.broker.topology import Topology
from worker.config import Settings
from worker.observability.health import Downtime
from worker.outage import OutageAbandonedError
from worker.partitioned import UNCONSUMED_GRACE_S, PartitionedConsumer
from worker.store import StoreError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class OwnsTwo:
    """Ownership of partitions 0 and 1, fresh, nothing to give up."""

    def wanted(self, share: float = 1.0) -> frozenset[int]:
        return frozenset({0, 1})

    def lost(self, partitions: Any) -> frozenset[int]:
        return frozenset()

    def to_give_up(self) -> frozenset[int]:
        return frozenset()


class HoldsUnreadable:
    """The order store while the database does not answer: partition 1's holds fail."""

    def __init__(self) -> None:
        self.failing = {1}

    def holds_of(self, partition: int) -> dict[str, Any]:
        if partition in self.failing:
            raise StoreError("connection refused")
        return {}


class NoRecords:
    def get(self, key: str) -> None:
        return None


class OpenChannel:
    is_open = True

    def basic_qos(self, **_: Any) -> None:
        pass

    def basic_consume(self, queue: str, *_: Any, **__: Any) -> str:
        return f"tag-{queue}"


def consumer_of_two(store: HoldsUnreadable, clock: Clock) -> PartitionedConsumer:
    consumer = PartitionedConsumer(
        Settings(),
        cast(Any, None),
        Topology("t", (1.0,), 20, 2),
        ownership=cast(Any, OwnsTwo()),
        order_store=cast(Any, store),
        records=cast(Any, NoRecords()),
    )
    consumer._unconsumed = Downtime(UNCONSUMED_GRACE_S, clock=clock)  # the grace on our clock
    consumer._watching = True  # no look at the holds: not what this test is about
    consumer._channel = OpenChannel()
    return consumer


def pump(consumer: PartitionedConsumer) -> None:
    consumer._next_reconcile = 0.0
    consumer._on_pump()


def test_a_partition_whose_holds_cannot_be_read_makes_it_unready_past_the_grace() -> None:
    # Given a consumer owning partitions 0 and 1, whose holds of 1 cannot be read
    clock, store = Clock(), HoldsUnreadable()
    consumer = consumer_of_two(store, clock)
    # When its loop turns for longer than the grace
    pump(consumer)
    assert consumer.partitions_problem() is None  # a moment: tried again next turn
    clock.now += UNCONSUMED_GRACE_S
    pump(consumer)
    # Then /readyz hears which partition and why
    assert consumer.partitions_problem() == (
        f"owned partitions not consumed for {UNCONSUMED_GRACE_S:.0f}s: [1]: connection refused"
    )
    # And once the store answers, partition 1 is consumed and all is well
    store.failing.clear()
    pump(consumer)
    assert consumer.partitions_problem() is None
    assert consumer._tags.keys() == {0, 1}


def test_a_delivery_of_an_abandoned_channel_does_not_start() -> None:
    # Given a consumer whose channel was lost after a delivery's task was queued (the
    # channel's holds forgotten with it)
    consumer = consumer_of_two(HoldsUnreadable(), Clock())
    queued_epoch = consumer._epoch
    consumer._epoch += 1
    ran: list[str] = []
    # When the pool gets to that task
    with pytest.raises(OutageAbandonedError):
        consumer._ride_out("alice", lambda: ran.append("ran"), None, queued_epoch)
    # Then it did not run (the broker redelivers it), while a current one does
    consumer._ride_out("alice", lambda: ran.append("current"), None, consumer._epoch)
    assert ran == ["current"]
