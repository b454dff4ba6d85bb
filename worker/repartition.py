"""Changing P (``PROVISIONER_PARTITIONS``) online, without losing a customer's order
(docs/ordering.md, "Changing P").

The store records the deployment's P; every process works with that one, whatever its own
setting. Once every live member is configured with another P', the sequencer switches,
one step per turn of its loop, with the step kept in the store (``partitions_switch``) so
that the next sequencer continues a switch its predecessor began:

1. ``drain:P'``: the sequencer stops routing (new commands wait in the intake, the delay
   tiers' copies too); the owners go on consuming until every old partition is empty.
2. ``release:P'``: every owner hands every partition back (the drain of a hand-over: what
   it received has its outcome decided, then the lease goes). A partition that is not empty
   by then (a delivery returned) goes back to step 1.
3. With no partition lease held and every old partition empty with no consumer, one
   transaction moves each hold and its parked commands to its partition under P', records
   P' and ends the switch. The owners take the new partitions, the sequencer routes with
   P'. A held customer's holder, still in a delay tier, comes back through the intake to
   the same partition as its hold.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from pika.exceptions import ChannelClosedByBroker

from worker.assignment import Partitioning
from worker.broker.addresses import BrokerAddresses
from worker.broker.connection import connect
from worker.broker.topology import Topology
from worker.routing import partition_of
from worker.store.order_upkeep import OrderUpkeep

log = logging.getLogger(__name__)

DRAIN, RELEASE = "drain", "release"
NOT_FOUND = 404


def parse_switch(value: str) -> tuple[str, int]:
    step, _, target = value.partition(":")
    return step, int(target)


class Repartitioner:
    """The sequencer's steps of a change of P; ``step`` once per turn while one is due."""

    def __init__(
        self,
        store: OrderUpkeep,
        topology: Topology,
        addresses: BrokerAddresses,
        connection_name: str,
    ) -> None:
        self._store, self._topology, self._addresses = store, topology, addresses
        self._connection_name = connection_name
        self._connection: Any = None
        self._channel: Any = None

    def step(self, plan: Partitioning) -> None:
        if plan.switch is None:
            self._store.set_switch(f"{DRAIN}:{plan.configured}")
            fields = {"from": plan.partitions, "to": plan.configured}
            log.warning("changing the partitions: routing paused", extra={"fields": fields})
            return
        step, target = parse_switch(plan.switch)
        depths = [self._depth(self._topology.partition_queue(i)) for i in range(plan.partitions)]
        waiting = sum(messages for messages, _ in depths)
        if step == DRAIN and not waiting:
            self._store.set_switch(f"{RELEASE}:{target}")
        elif step == RELEASE and waiting:
            self._store.set_switch(f"{DRAIN}:{target}")  # a delivery came back: consume it
        elif step == RELEASE and not any(consumers for _, consumers in depths):
            self._finish(plan.partitions, target)

    def _finish(self, partitions: int, target: int) -> None:
        """Once no partition lease is held: holds moved, P' recorded, routing again."""
        if self._store.finish_switch(target, lambda key: partition_of(key, target)):
            fields = {"from": partitions, "to": target}
            log.warning("partitions changed: routing again", extra={"fields": fields})
            self.close()

    def _depth(self, queue: str) -> tuple[int, int]:
        """(ready messages, consumers) of ``queue``; a queue that does not exist holds none."""
        if self._connection is None or not self._connection.is_open:
            self._connection = connect(self._addresses, connection_name=self._connection_name)
            self._channel = None
        if self._channel is None or not self._channel.is_open:
            self._channel = self._connection.channel()
        try:
            method = self._channel.queue_declare(queue, passive=True).method
        except ChannelClosedByBroker as exc:  # the channel is closed: the next call opens one
            if exc.reply_code == NOT_FOUND:
                return 0, 0
            raise
        return int(method.message_count), int(method.consumer_count)

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            with contextlib.suppress(Exception):
                connection.close()
