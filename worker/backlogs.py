"""A customer's parked commands run once its hold is cleared (docs/ordering.md, point 8):
one at a time on its pool key, each published with confirms on the connection's thread and
removed from the store once confirmed, then the next. A new connection (``_epoch``) stops
the chains of the old one; the partition's next consumption resumes them from the store.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from contracts import command_customer
from worker.broker import headers as h
from worker.broker.confirms import ConfirmGroup
from worker.broker.publishing import carry_out_confirmed
from worker.consumer import Consumer
from worker.decision import Decision, Envelope
from worker.delivery import Delivery
from worker.outage import OutageAbandonedError, let_go_after_outage, ride_out_store_outage
from worker.parking import Holds, OrderGate, ParkedRun

log = logging.getLogger("worker.partitioned")


class BacklogRunner(Consumer):
    """The consumer of partitions (``worker.partitioned``) sets these up."""

    _holds: Holds
    _gate: OrderGate
    _chains: dict[int, int]  # partition -> backlogs of parked commands running
    _epoch: int  # a new connection: chains of the old one stop
    _given_back: set[str]  # ordering keys a stopping process gave back to the broker

    def _count_running(self, partition: int | None, delta: int) -> None:
        raise NotImplementedError  # worker.partitioned

    def on_confirmed(
        self, delivery: Delivery, envelope: Envelope, decision: Decision, group: ConfirmGroup
    ) -> None:
        key = order_key_of(delivery.properties, envelope)
        own = envelope.command.idempotency_key if envelope.command is not None else None
        hold = self._holds.get(key) if key is not None else None
        refused = group.refused(self._topology.events_exchange)
        if hold is None or own is None or hold.finishing != own or refused:
            super().on_confirmed(delivery, envelope, decision, group)
            if key is not None:  # a hold without a holder (released, say): its backlog runs
                self._start_backlog(key)
            return
        assert key is not None  # a hold was found under it
        settle = functools.partial(super().on_confirmed, delivery, envelope, decision, group)
        self._clear_hold_then_ack(key, own, hold.partition, delivery, settle)

    def _clear_hold_then_ack(
        self, key: str, own: str, partition: int, delivery: Delivery, settle: Callable[[], None]
    ) -> None:
        """The holder's outcome is out: clear the hold in the store, then ``settle`` (ack)
        the holder and run its backlog. Acked first, a crash before the clear would leave
        the hold to a holder that never comes back; cleared at the decision (before the
        confirm), a crash would run the backlog ahead of the holder's event. A hand-over
        waits for it (``_count_running``)."""
        self._count_running(partition, 1)
        clear = functools.partial(self._holds.clear_finished, key, own)
        task = functools.partial(self._ride_out, key, clear, None, self._epoch)
        cleared = functools.partial(
            self._on_hold_cleared, key, partition, delivery, self._epoch, settle
        )
        done = functools.partial(self._after_hold_clear, delivery, cleared)
        self._pool.submit(key, task, done)

    def _after_hold_clear(
        self,
        delivery: Delivery,
        cleared: Callable[[Future[Any]], None],
        future: Future[Any],
    ) -> None:
        # A pool thread. The holder is still in flight: in transit like any outcome, so that
        # a connection lost with this hop queued counts it out (the broker redelivers it).
        with self._in_flight_lock:
            self._in_transit[id(delivery)] = delivery
        callback = functools.partial(cleared, future)
        gone = functools.partial(self._forget, delivery)
        self._on_connection_thread(callback, "hold not cleared", gone)

    def _on_connection_thread(
        self, callback: Callable[[], None], undone: str, gone: Callable[[], None] | None = None
    ) -> None:
        """From a pool thread: ``callback`` on the connection's thread; when the connection
        is gone, ``gone`` runs instead (if given) and ``undone`` is logged (what it left is
        redelivered or resumed)."""
        try:
            self._connection.add_callback_threadsafe(callback)
        except Exception:
            if gone is not None:
                gone()
            log.info("%s: connection gone", undone)

    def _on_hold_cleared(
        self,
        key: str,
        partition: int,
        delivery: Delivery,
        epoch: int,
        settle: Callable[[], None],
        future: Future[Any],
    ) -> None:
        if epoch == self._epoch:  # a new channel started its partitions' counts afresh
            self._count_running(partition, -1)
        if not self._take_from_transit(delivery):
            return  # counted out with its lost connection
        exc = future.exception()
        if exc is not None:
            # Left unacked: it comes back with its channel and replays. Counted out now, or
            # a drain would wait for it until its bound.
            self._count_in_flight(-1)
            quiet = isinstance(exc, OutageAbandonedError)
            log.log(logging.INFO if quiet else logging.WARNING, "hold not cleared", exc_info=exc)
            return
        settle()
        self._start_backlog(key)

    def _start_backlog(self, key: str) -> None:
        partition = self._holds.begin_drain(key)
        if partition is None:
            return
        self._chains[partition] = self._chains.get(partition, 0) + 1
        self._next_parked(key, partition, self._epoch, None)

    def _start_backlog_threadsafe(self, epoch: int, key: str) -> None:
        """From a pool thread (a hold released, ``worker.hold_watch``): on the connection's."""
        # Gone, the connection's partitions resume the backlog when consumed again.
        callback = functools.partial(self._start_backlog_of, epoch, key)
        self._on_connection_thread(callback, "backlog not started")

    def _start_backlog_of(self, epoch: int, key: str) -> None:
        if epoch == self._epoch:
            self._start_backlog(key)

    def _end_backlog(self, key: str, partition: int) -> None:
        self._holds.end_drain(key)
        self._chains[partition] = max(0, self._chains.get(partition, 0) - 1)

    def _ride_out(
        self, key: str, task: Callable[[], Any], let_go: Callable[[], None] | None, epoch: int
    ) -> Any:
        """``task`` waits out a store outage while the channel of ``epoch`` is open (docs/
        ordering.md, "A store outage"); once given back (unacked), what its run left in the
        store is settled when the store answers (``Executor.let_go``). While the process
        stops, the later commands of a key given back are given back too, unrun."""
        if epoch != self._epoch:
            # Its channel is gone, and with it the holds this process read: the broker
            # returns the delivery (to the partition's owner, maybe another process), and
            # run now it could pass a command of its customer still held (parked) there.
            raise OutageAbandonedError("its channel is gone: the broker redelivers it")
        stopping = self._stopping.is_set()
        if stopping and key in self._given_back:
            raise OutageAbandonedError("an earlier command of this key went back unacked")
        try:
            return ride_out_store_outage(task, self._while_channel(epoch), self._stopping.wait)
        except OutageAbandonedError:
            if self._stopping.is_set():  # a drain runs the key's later commands otherwise
                self._given_back.add(key)
            if let_go is not None:
                let_go_after_outage(let_go, self._stopping.is_set, self._stopping.wait)
            raise

    def _while_channel(self, epoch: int) -> Callable[[], bool]:
        return lambda: self._epoch == epoch and not self._stopping.is_set()

    def _next_parked(self, key: str, partition: int, epoch: int, done_seq: int | None) -> None:
        run = functools.partial(self._gate.run_parked, key, partition, done_seq)
        let_go = functools.partial(self._gate.let_go_parked, key)
        task = functools.partial(self._ride_out, key, run, let_go, epoch)
        done = functools.partial(self._on_parked_run, key, partition, epoch)
        self._pool.submit(key, task, done)

    def _on_parked_run(self, key: str, partition: int, epoch: int, future: Future[Any]) -> None:
        # A pool thread: back to the connection's thread to publish (or, the connection
        # gone, the backlog resumes with the partition).
        callback = functools.partial(self._carry_out_parked, key, partition, epoch, future)
        self._on_connection_thread(callback, "backlog interrupted")

    def _carry_out_parked(self, key: str, partition: int, epoch: int, future: Future[Any]) -> None:
        confirms = self._confirms
        if epoch != self._epoch or confirms is None:
            return
        exc = future.exception()
        run: ParkedRun | None = None if exc is not None else future.result()
        if run is None:  # kept in the store: the partition's next consumption resumes it
            if exc is not None and not isinstance(exc, OutageAbandonedError):
                log.error("running a parked command failed", exc_info=exc)
            self._end_backlog(key, partition)
            return
        delivery = Delivery(
            None, 0, run.parked.routing_key, run.properties, run.parked.body, time.monotonic()
        )
        settled = functools.partial(self._on_parked_confirmed, key, partition, epoch, run, delivery)
        failure = carry_out_confirmed(
            confirms,
            self._topology,
            delivery.body,
            delivery.properties,
            delivery.routing_key,
            run.decision,
            settled,
        )
        if failure is not None:  # kept in the store; the partition's next consumption retries
            log.error("a parked command's outcome is not publishable", exc_info=failure)
            self._end_backlog(key, partition)

    def _on_parked_confirmed(
        self,
        key: str,
        partition: int,
        epoch: int,
        run: ParkedRun,
        delivery: Delivery,
        group: ConfirmGroup,
    ) -> None:
        if epoch != self._epoch:
            return
        if group.refused(self._topology.events_exchange):
            # Kept in the store: the partition's next owner (or consumption) runs it again.
            log.error("publish refused for a parked command; its backlog waits")
            self._end_backlog(key, partition)
            return
        if self._observer is not None:
            elapsed = time.monotonic() - delivery.started_at
            self._observer.command_done(run.envelope, run.decision, elapsed)
        self._next_parked(key, partition, epoch, run.parked.seq)


def order_key_of(properties: Any, envelope: Envelope) -> str | None:
    key = (properties.headers or {}).get(h.ORDER_KEY)
    if isinstance(key, str):
        return key
    return command_customer(envelope.command) if envelope.command is not None else None
