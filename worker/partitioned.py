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
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from worker.awaiting import PredecessorWaits
from worker.backlogs import order_key_of
from worker.broker import headers as h
from worker.decision import Decision, Envelope
from worker.delivery import Delivery
from worker.hold_watch import HoldWatch, check_every_s, overdue_after_s
from worker.observability.health import Downtime
from worker.observability.redact import redact_text
from worker.outage import OutageAbandonedError
from worker.parking import Holds, NotParked, OrderGate
from worker.partitions import START_FRESH_SHARE, Ownership
from worker.store import IdempotencyStore, StoreError
from worker.store.order_upkeep import OrderUpkeep

log = logging.getLogger(__name__)

MIN_PARTITION_PREFETCH = 8
RECONCILE_S = 0.05  # how often the loop compares its subscriptions with what it owns
# A partition owned and not consumed for longer makes the process unready (its commands wait).
UNCONSUMED_GRACE_S = 5.0
FENCED = "partitions_fenced"  # why the channel is closed (the channel-loss metric's reason)


class PartitionedConsumer(PredecessorWaits):
    def __init__(
        self,
        *args: Any,
        ownership: Ownership,
        order_store: OrderUpkeep,
        records: IdempotencyStore,
        order_metrics: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._ownership = ownership
        self._holds = Holds(order_store)
        self._set_up_waits(records, order_store, order_metrics)
        self._gate = OrderGate(
            self._executor, order_store, self._holds, self._envelope_of, order_metrics
        )
        margin_s = self._settings.hold_overdue_margin_s
        overdue_s = overdue_after_s(self._settings.retry_delays_s, margin_s)
        self._watch = HoldWatch(order_store, self._holds, records.get, overdue_s, order_metrics)
        self._watch_every_s, self._next_watch, self._watching = check_every_s(margin_s), 0.0, False
        self._runs_what_it_received = False  # a drain runs it all (``_drain``)
        self._given_back: set[str] = set()  # keys a stopping process gave back (an outage)
        self._next_reconcile = 0.0  # the loop turns often; ownership changes every 0.1 s at most
        self._unconsumed = Downtime(UNCONSUMED_GRACE_S)
        self._chains: dict[int, int] = {}  # partition -> backlogs of parked commands running
        self._epoch = 0  # a new connection: chains of the old one stop
        self._observer = NotParked(self._observer)
        self._tags: dict[int, str] = {}  # partition -> consumer tag on the current channel
        self._partition_of_tag: dict[str, int] = {}
        # (channel, delivery tag) -> partition: an old channel's task may end after a new
        # channel's deliveries, whose tags start again at 1.
        self._partition_of_delivery: dict[tuple[int, int], int | None] = {}
        self._running: dict[int, int] = {}  # partition -> deliveries whose outcome is pending
        self._running_lock = threading.Lock()

    # -- which partitions ---------------------------------------------------------------

    def partitions_problem(self) -> str | None:
        """For /readyz: partitions this process owns and cannot consume (the store)."""
        return self._unconsumed.problem("owned partitions not consumed")

    def _consumed_queue(self) -> str | None:
        return ""  # the partitions, subscribed by ``_on_pump``

    def _open_channel(self) -> None:
        self._tags.clear()
        self._partition_of_tag.clear()
        super()._open_channel()
        self._next_reconcile = 0.0
        self._on_pump()

    def _on_pump(self) -> None:
        channel = self._channel
        now = time.monotonic()
        if channel is None or not channel.is_open or now < self._next_reconcile:
            return
        self._next_reconcile = now + RECONCILE_S
        if self._return_if_fenced():
            return
        wanted = self._ownership.wanted()
        startable = self._ownership.wanted(START_FRESH_SHARE)
        for partition in sorted(startable - self._tags.keys()):
            try:
                self._consume(channel, partition, len(wanted))
            except StoreError as exc:  # its holds unreadable: not consumed, tried next turn
                log.warning("partition not consumed: the store did not answer", exc_info=True)
                missing = sorted(startable - self._tags.keys())
                self._unconsumed.down(f"{missing}: {redact_text(str(exc))[:200]}")
        if startable <= self._tags.keys():
            self._unconsumed.up()
        for partition in sorted(self._tags.keys() - wanted):
            tag = self._tags.pop(partition)
            self._partition_of_tag.pop(tag, None)
            channel.basic_cancel(tag)  # what was delivered and not yet dispatched goes back
            log.info("handing over a partition", extra={"fields": {"partition": partition}})
        if self._waits.waiting():  # all a partition delivered waits aside: given back
            self._give_back_stalled()
        for partition in self._ownership.to_give_up():
            if partition not in self._tags and not self._running_in(partition):
                self._holds.forget(partition)
                self._ownership.drained(partition)
        if not self._watching and now >= self._next_watch:
            self._watch_holds(now)

    def _return_if_fenced(self) -> bool:
        """A partition whose lease fenced itself (a store outage) or went to another member
        while this process still has deliveries of it: close the channel, so that every
        unacked delivery goes back to its partition in order, ahead of the customer's later
        commands (docs/ordering.md, "A store outage"). Commands waiting out the outage give up
        (``OutageAbandonedError``); nothing goes to a delay tier without a hold."""
        with self._running_lock:
            busy = {p for p, n in self._running.items() if n}
            busy.update(p for p, n in self._chains.items() if n)
        lost = self._ownership.lost(busy | self._tags.keys())
        if not lost:
            return False
        self._report.channel_lost(FENCED, f"leases of partitions {sorted(lost)} not renewed")
        old = self._consuming
        self._abandon_channel()
        if old is not None:
            old.close_keeping_order(self._settings.confirm_timeout_s)
        self._open_channel()
        return True

    def _watch_holds(self, now: float) -> None:
        self._watching, self._next_watch = True, now + self._watch_every_s
        released = functools.partial(self._start_backlog_threadsafe, self._epoch)
        try:
            self._watch.run_on(self._pool, frozenset(self._tags), released, self._watched)
        except RuntimeError:  # the pool is shut down: the process is stopping
            log.debug("holds not looked at: stopping")

    def _watched(self) -> None:
        self._watching = False  # a pool thread; the loop reads it on its next turn

    def _consume(self, channel: Any, partition: int, owned: int) -> None:
        # The prefetch applies per consumer: share the process's among its partitions.
        per_partition = max(MIN_PARTITION_PREFETCH, -(-self._settings.prefetch // owned))
        channel.basic_qos(prefetch_count=per_partition)
        backlogs = self._holds.load(partition)  # before its first delivery
        queue = self._topology.partition_queue(partition)
        tag = channel.basic_consume(queue, self.on_message, auto_ack=False)
        self._tags[partition] = tag
        self._partition_of_tag[tag] = partition
        for key in backlogs:  # a previous owner's, interrupted
            self._start_backlog(key)
        log.info(
            "consuming a partition",
            extra={"fields": {"partition": partition, "prefetch": per_partition, "owned": owned}},
        )

    def _abandon_channel(self) -> None:
        self._tags.clear()
        self._partition_of_tag.clear()
        self._partition_of_delivery.clear()
        with self._running_lock:  # their outcomes are dropped; the customer leases remain
            self._running.clear()
        # Backlogs stop; the holds are read again when the partitions are consumed again.
        self._epoch += 1
        self._chains.clear()
        self._holds.forget()
        super()._abandon_channel()

    def _drain(self) -> None:
        # Everything received runs, as in a hand-over, and only what pika had not yet
        # dispatched goes back, rejected one by one in delivery order by its basic_cancel
        # (later than anything received). Nothing is left for the channel's close to hand
        # back: a quorum queue (3.10) puts a delivery that was on its way when the channel
        # closed ahead of the channel's other unacked ones, so a customer's later command
        # would run first (tests/integration/test_order_repartition.py caught it).
        self._runs_what_it_received = True
        channel = self._channel
        if channel is not None and channel.is_open:
            for tag in list(self._tags.values()):
                try:
                    channel.basic_cancel(tag)
                except Exception:  # the base drain reports a lost broker
                    break
        self._tags.clear()
        super()._drain()

    def _drop_waiting(self) -> None:
        channel = self._channel
        if not (self._runs_what_it_received and channel is not None and channel.is_open):
            super()._drop_waiting()

    def _wait_for_calls(self, connection: Any, deadline: float) -> None:
        super()._wait_for_calls(connection, deadline)
        consuming = self._consuming
        if connection is not None and connection.is_open and consuming is not None:
            consuming.close_keeping_order(self._settings.confirm_timeout_s)

    def _running_in(self, partition: int) -> int:
        with self._running_lock:
            return self._running.get(partition, 0) + self._chains.get(partition, 0)

    def _count_running(self, partition: int | None, delta: int) -> None:
        if partition is None:
            return
        with self._running_lock:
            self._running[partition] = self._running.get(partition, 0) + delta

    # -- deliveries ---------------------------------------------------------------------

    def on_message(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        if channel is not self._channel:
            return  # a closing channel's: it goes back to its partition unacked
        self._partition_of_delivery[(id(channel), method.delivery_tag)] = (
            self._partition_of_tag.get(method.consumer_tag)
        )
        super().on_message(channel, method, properties, body)

    def _ordering_key(self, delivery: Delivery, envelope: Envelope) -> str | None:
        return order_key_of(delivery.properties, envelope)

    def _task(self, delivery: Delivery, envelope: Envelope) -> Callable[[], Decision]:
        partition = self._partition_of_delivery.get((id(delivery.channel), delivery.delivery_tag))
        self._count_running(partition, 1)
        key = order_key_of(delivery.properties, envelope)
        if key is None or partition is None:
            return super()._task(delivery, envelope)
        gate = functools.partial(
            self._gate.process,
            envelope,
            key,
            partition,
            delivery.routing_key,
            delivery.properties,
            delivery.body,
        )
        chained = self._in_chain(delivery, envelope, key, gate)  # a returned one may wait
        command = envelope.command
        let_go = None if command is None else functools.partial(self._executor.let_go, command)
        return functools.partial(self._ride_out, key, chained, let_go, self._epoch)

    def _on_done_in_pool(self, delivery: Delivery, envelope: Envelope, future: Future[Any]) -> None:
        try:
            super()._on_done_in_pool(delivery, envelope, future)
        finally:  # a pool thread: the map is only read and popped, never iterated
            tag = (id(delivery.channel), delivery.delivery_tag)
            self._count_running(self._partition_of_delivery.pop(tag, None), -1)

    def on_processed(self, delivery: Delivery, envelope: Envelope, future: Future[Any]) -> None:
        if isinstance(future.exception(), OutageAbandonedError) and self._take_from_transit(
            delivery
        ):
            # Left unacked: the channel's close (fenced, or the end of a drain) returns it to
            # its partition ahead of the customer's later commands.
            self._count_in_flight(-1)
            return
        super().on_processed(delivery, envelope, future)

    def _envelope(self, delivery: Delivery) -> Envelope:
        envelope = super()._envelope(delivery)
        headers = delivery.properties.headers
        if isinstance(headers, dict) and headers.get(h.RESEQUENCED) and not envelope.delivery_count:
            # The intake delivered it twice: an earlier copy may have run already.
            envelope = dataclasses.replace(envelope, delivery_count=1)
        return envelope

    def _envelope_of(self, properties: Any, body: bytes) -> Envelope:
        """A parked command's envelope (read from the store, not delivered)."""
        return self._envelope(Delivery(None, 0, "", properties, body, time.monotonic()))
