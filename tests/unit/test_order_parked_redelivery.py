"""A parked command keeps whether it was a redelivery (docs/ordering.md, point 8), on the real
store (SQLite and PostgreSQL).

Found by the reduced soak: a worker killed after parking a command and before acking it
gets that command back from its partition, redelivered, and parks it a second time. Run
from the store, the second copy was read as a first delivery (the broker's count is only
believed on a redelivery) and so, after the first copy had failed, it ran again: a second
terminal event with another event_id."""

from __future__ import annotations

import json
from typing import Any, cast

import pika

from tests.fixtures.stores import FakeClock
from worker.broker import headers as h
from worker.broker.topology import Topology
from worker.config import Settings
from worker.decision import Decision, Envelope
from worker.delivery import Delivery
from worker.parking import Holds, OrderGate
from worker.partitioned import PartitionedConsumer
from worker.store import IdempotencyStore
from worker.store.order import Backend
from worker.store.order_upkeep import OrderUpkeep

KEY, HOLDER, PARTITION = "alice", "alice-p0", 2
BODY = json.dumps(
    {
        "type": "GetAppSettings",
        "idempotency_key": "alice-p1",
        "customer": "alice",
        "app": "clicktrack",
    }
).encode()


class NoRecords:
    def get(self, key: str) -> None:
        return None


class RecordingExecutor:
    """Records the envelopes it is asked to run; every command ends in ``outcome``."""

    def __init__(self) -> None:
        self.delivery_counts: list[int] = []
        self.outcome = "failed"

    def process(self, envelope: Envelope) -> Decision:
        self.delivery_counts.append(envelope.delivery_count)
        return Decision("GetAppSettings", self.outcome)


def envelope_reader() -> PartitionedConsumer:
    """The consumer of partitions, for how it reads a delivery and a parked command."""
    return PartitionedConsumer(
        Settings(),
        cast(Any, None),
        Topology("t", (1.0,), 20, 4),
        ownership=cast(Any, None),
        order_store=cast(Any, None),
        records=cast(Any, NoRecords()),
    )


def delivered(redelivered: bool) -> Delivery:
    headers = {h.DELIVERY_COUNT: 1} if redelivered else {}
    properties = pika.BasicProperties(headers=headers, message_id="m-1")
    return Delivery(None, 7, "2", properties, BODY, 0.0, redelivered=redelivered)


class Owner:
    """A partition owner's view over the shared store (one process): its holds and order
    gate, the consumer's reading of a delivery, and ``executor`` recording what ran."""

    def __init__(self, upkeep: OrderUpkeep, executor: RecordingExecutor | None = None) -> None:
        self.upkeep, self.reader = upkeep, envelope_reader()
        self.executor = executor or RecordingExecutor()
        self.holds = Holds(upkeep)
        self.gate = OrderGate(
            cast(Any, self.executor), upkeep, self.holds, self.reader._envelope_of
        )

    @classmethod
    def holding(cls, store: IdempotencyStore, clock: FakeClock, holder: str) -> Owner:
        """Given: the customer KEY held by ``holder`` (in a delay tier)."""
        owner = cls(OrderUpkeep(cast(Backend, store), clock=clock))
        owner.holds.set(KEY, PARTITION, holder)
        return owner

    def next_owner(self) -> Owner:
        """The partition's next owner (after a crash): same store, same recording."""
        return Owner(self.upkeep, self.executor)

    def arrive(self, delivery: Delivery) -> Decision:
        envelope = self.reader._envelope(delivery)
        return self.gate.process(
            envelope, KEY, PARTITION, "GetAppSettings", delivery.properties, delivery.body
        )


def test_a_redelivered_command_parked_twice_runs_from_the_store_as_a_redelivery(
    store: IdempotencyStore, clock: FakeClock
) -> None:
    # Given a customer held behind a command in a delay tier
    owner = Owner.holding(store, clock, HOLDER)
    gate, executor = owner.gate, owner.executor
    # When its next command arrives, then the same command again, returned by the broker
    # (its first park was never acked: the worker was killed)
    for delivery in (delivered(redelivered=False), delivered(redelivered=True)):
        assert owner.arrive(delivery).outcome == "parked"
    # And the holder finishes: the backlog runs both copies, in order
    owner.holds.set(KEY, PARTITION, None)
    first = gate.run_parked(KEY, PARTITION, None)
    assert first is not None
    second = gate.run_parked(KEY, PARTITION, first.parked.seq)
    assert second is not None
    # Then the first copy ran as a first delivery, the second as a redelivery (whose recorded
    # failure the executor publishes again, instead of running the key anew)
    assert executor.delivery_counts == [0, 1]
    # And nothing else is parked
    assert gate.run_parked(KEY, PARTITION, second.parked.seq) is None


def test_a_parked_command_run_once_and_left_by_a_crash_runs_again_as_a_redelivery(
    store: IdempotencyStore, clock: FakeClock
) -> None:
    # Given a customer held, one command parked behind the hold (a first delivery)
    owner = Owner.holding(store, clock, HOLDER)
    owner.arrive(delivered(redelivered=False))
    # When the holder finishes and the backlog runs the command, and the process dies
    # before the row is deleted (its outcome unconfirmed)
    owner.holds.set(KEY, PARTITION, None)
    assert owner.gate.run_parked(KEY, PARTITION, None) is not None
    # And the partition's next owner runs the backlog from the store
    successor = owner.next_owner()
    assert successor.holds.load(PARTITION) == [KEY]
    again = successor.gate.run_parked(KEY, PARTITION, None)
    # Then the first run was a first delivery, the second a redelivery (which replays the
    # recorded outcome instead of running a failed key anew)
    assert again is not None
    assert owner.executor.delivery_counts == [0, 1]
