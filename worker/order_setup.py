"""Wiring of per-customer order for one worker process (docs/ordering.md): the partition
ownership, the sequencer and the consumer of partitions, when ``PROVISIONER_PARTITIONS``
is above 0."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from worker.broker.topology import Topology
from worker.config import Settings
from worker.consumer import Consumer
from worker.observability.order_metrics import OrderMetrics
from worker.partitioned import PartitionedConsumer
from worker.partitions import Ownership
from worker.sequencer import Sequencer
from worker.store import IdempotencyStore
from worker.store.order import Backend, OrderStore
from worker.store.order_upkeep import OrderUpkeep

SEQUENCER_JOIN_S = 10.0


@dataclass
class OrderingParts:
    ownership: Ownership
    sequencer: Sequencer
    store: OrderUpkeep
    metrics: OrderMetrics
    records: IdempotencyStore

    def consumer_class(self) -> Callable[..., Consumer]:
        return functools.partial(
            PartitionedConsumer,
            ownership=self.ownership,
            order_store=self.store,
            records=self.records,
            order_metrics=self.metrics,
        )

    def start(self, health: Any = None, consumer: Consumer | None = None) -> None:
        """The threads, and what /readyz asks of them (``health``: ``Health.add_check``)."""
        self.ownership.start()
        self.sequencer.start()
        if health is not None:
            health.add_check("partition leases", self.ownership.problem)
            health.add_check("sequencer", self.sequencer.problem)
            if isinstance(consumer, PartitionedConsumer):
                health.add_check("partitions", consumer.partitions_problem)

    def stop(self) -> None:
        """After the consumer drained: the sequencer returns what it holds, then the leases
        and the membership go at once (the others take over on their next heartbeat)."""
        self.sequencer.stop()
        self.sequencer.join(SEQUENCER_JOIN_S)
        self.ownership.leave()


def ordering_parts(
    settings: Settings,
    store: IdempotencyStore,
    heartbeat_store: IdempotencyStore,
    topology: Topology,
    registry: Any,
) -> OrderingParts | None:
    """None when partitions are off (``PROVISIONER_PARTITIONS=0``). The leases renew on the
    heartbeat's own store connection, which command traffic never queues behind."""
    if not settings.partitions:
        return None
    metrics = OrderMetrics(registry)
    order_store = OrderUpkeep(cast(Backend, store))
    ownership = Ownership(
        OrderStore(cast(Backend, heartbeat_store)),
        settings.worker_id,
        settings.partitions,
        heartbeat_s=settings.worker_heartbeat_s,
        ttl_s=settings.worker_dead_after_s,
        metrics=metrics,
    )
    sequencer = Sequencer(settings, topology, ownership, order_store, metrics)
    return OrderingParts(ownership, sequencer, order_store, metrics, store)
