"""The consumer of partitions: consumes the partitions this process owns (docs/ordering.md).

Between two turns of its loop it compares what it consumes with what ``Ownership`` says it
owns: it subscribes to partitions it gained and cancels those it must give up. A cancelled
partition is reported drained once every delivery received from it has its outcome
decided (the pool task ran): only then is its lease released, so the next owner starts
behind every command this one took. Deliveries are keyed in the pool by the ordering key
the sequencer put in their headers, so a renamed customer's commands queue together.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from concurrent.futures import Future
from typing import Any

from contracts import command_customer
from worker.broker import headers as h
from worker.consumer import Consumer, Delivery
from worker.decision import Envelope
from worker.partitions import Ownership

MIN_PARTITION_PREFETCH = 8


class PartitionedConsumer(Consumer):
    def __init__(self, *args: Any, ownership: Ownership, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ownership = ownership
        self._tags: dict[int, str] = {}  # partition -> consumer tag on the current channel
        self._partition_of_tag: dict[str, int] = {}
        self._running: dict[int, int] = {}  # partition -> deliveries whose outcome is pending
        self._running_lock = threading.Lock()

    # -- which partitions ---------------------------------------------------------------

    def _subscribe(self, channel: Any) -> None:
        self._tags.clear()
        self._partition_of_tag.clear()
        self._on_pump()

    def _on_pump(self) -> None:
        channel = self._channel
        if channel is None or not channel.is_open:
            return
        wanted = self._ownership.wanted()
        for partition in sorted(wanted - self._tags.keys()):
            self._consume(channel, partition, len(wanted))
        for partition in sorted(self._tags.keys() - wanted):
            tag = self._tags.pop(partition)
            self._partition_of_tag.pop(tag, None)
            channel.basic_cancel(tag)  # what was delivered and not yet dispatched goes back
        for partition in self._ownership.to_give_up():
            if partition not in self._tags and not self._running_in(partition):
                self._ownership.drained(partition)

    def _consume(self, channel: Any, partition: int, owned: int) -> None:
        # The prefetch applies per consumer: share the process's among its partitions.
        per_partition = max(MIN_PARTITION_PREFETCH, -(-self._settings.prefetch // owned))
        channel.basic_qos(prefetch_count=per_partition)
        queue = self._topology.partition_queue(partition)
        tag = channel.basic_consume(queue, self.on_message, auto_ack=False)
        self._tags[partition] = tag
        self._partition_of_tag[tag] = partition

    def _on_connection_lost(self, exc: BaseException) -> None:
        self._tags.clear()
        self._partition_of_tag.clear()
        super()._on_connection_lost(exc)

    def _drain(self) -> None:
        channel = self._channel
        if channel is not None and channel.is_open:
            for tag in list(self._tags.values()):
                try:
                    channel.basic_cancel(tag)
                except Exception:  # the base drain reports a lost broker
                    break
        self._tags.clear()
        super()._drain()

    def _running_in(self, partition: int) -> int:
        with self._running_lock:
            return self._running.get(partition, 0)

    def _count_running(self, partition: int | None, delta: int) -> None:
        if partition is None:
            return
        with self._running_lock:
            self._running[partition] = self._running.get(partition, 0) + delta

    # -- deliveries ---------------------------------------------------------------------

    def on_message(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        headers = properties.headers or {}
        routing_key = headers.get(h.ORIGINAL_ROUTING_KEY)
        delivery = Delivery(
            channel,
            method.delivery_tag,
            routing_key if isinstance(routing_key, str) else method.routing_key,
            properties,
            body,
            time.monotonic(),
        )
        envelope = self._envelope(properties, body)
        if headers.get(h.RESEQUENCED) and not envelope.delivery_count:
            # The intake delivered it twice: an earlier copy may have run already.
            envelope = dataclasses.replace(envelope, delivery_count=1)
        key = headers.get(h.ORDER_KEY)
        if not isinstance(key, str):
            key = command_customer(envelope.command) if envelope.command is not None else None
        partition = self._partition_of_tag.get(method.consumer_tag)
        self._count_in_flight(1)
        self._count_running(partition, 1)
        task = functools.partial(self._executor.process, envelope)
        done = functools.partial(self._on_done_in_partition, partition, delivery, envelope)
        self._pool.submit(key, task, done)

    def _on_done_in_partition(
        self, partition: int | None, delivery: Delivery, envelope: Envelope, future: Future[Any]
    ) -> None:
        try:
            self._on_done_in_pool(delivery, envelope, future)
        finally:
            self._count_running(partition, -1)
