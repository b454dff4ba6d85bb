"""The consumer of partitions' share of predecessor chains (docs/ordering.md, "Returned
deliveries out of order"): each ordered delivery's task first asks ``Predecessors`` whether
it may run (a returned one whose predecessor has not passed steps aside), and tells it when
it ended, so what waits for it runs next.

When everything a partition delivered here waits aside, its predecessors cannot arrive on
this channel (the consumer was cancelled: a hand-over, a drain; or the waiting deliveries
fill the partition's prefetch): they are given back, nacked in delivery order, so they
return behind their predecessors."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Hashable
from typing import Any, cast

from worker.backlogs import BacklogRunner
from worker.broker import headers as h
from worker.decision import Decision, Envelope
from worker.delivery import Delivery
from worker.outage import OutageAbandonedError
from worker.predecessors import Passed, Predecessors, Waiter
from worker.routing import key_of
from worker.store import IdempotencyStore
from worker.store.order import OrderStore

log = logging.getLogger("worker.partitioned")

# Everything a partition delivered here waiting aside this long, its consumer still on: the
# predecessors are not coming on this channel (the waiting ones fill the prefetch).
GIVE_BACK_AFTER_S = 1.0


class PredecessorWaits(BacklogRunner):
    """Set up by the consumer of partitions (``worker.partitioned``)."""

    _waits: Predecessors
    _tags: dict[int, str]  # partition -> consumer tag on the current channel
    _partition_of_delivery: dict[tuple[int, int], int | None]
    _running: dict[int, int]  # partition -> deliveries whose outcome is pending
    _running_lock: threading.Lock

    def _count_running(self, partition: int | None, delta: int) -> None:
        raise NotImplementedError  # worker.partitioned

    def _set_up_waits(
        self, records: IdempotencyStore, order_store: OrderStore, metrics: Any
    ) -> None:
        passed = Passed(records, order_store, self._holds)
        wait_s = self._settings.predecessor_wait_s
        self._waits = Predecessors(passed, self._pool.resume, wait_s, metrics)

    def _in_chain(
        self, delivery: Delivery, envelope: Envelope, key: str, gate: Callable[[], Decision]
    ) -> Callable[[], Decision]:
        command = envelope.command
        own = command.idempotency_key if command is not None else key_of(delivery.body)
        token = (id(delivery.channel), delivery.delivery_tag)
        after = h.predecessor_of(delivery.properties)
        returned = delivery.redelivered or envelope.delivery_count > 0  # or resequenced
        partition = self._partition_of_delivery.get(token)
        return functools.partial(
            self._run_in_chain, token, key, own, after, returned, partition, gate
        )

    def _run_in_chain(
        self,
        token: Hashable,
        key: str,
        own: str | None,
        after: str | None,
        returned: bool,
        partition: int | None,
        gate: Callable[[], Decision],
    ) -> Decision:
        self._waits.check(token, key, own, after, returned, partition)
        try:
            decision = gate()
        except OutageAbandonedError:
            raise  # back to its partition unacked: what waits for it goes back as well
        except BaseException:
            self._waits.finished(key, own)  # decided all the same (a retry, later)
            raise
        self._waits.finished(key, own)
        return decision

    def _abandon_channel(self) -> None:
        self._waits.forget()  # their deliveries go back with the channel
        super()._abandon_channel()

    def _drain(self) -> None:
        try:
            super()._drain()  # what waits aside keeps being looked at meanwhile
        finally:
            self._waits.stop()

    # -- giving back ----------------------------------------------------------------------

    def _give_back_stalled(self) -> None:
        """On the connection's thread: partitions whose received deliveries all wait aside
        and whose consumer is cancelled, or which stalled, give them back."""
        for partition in self._waits.partitions():
            with self._running_lock:
                running = self._running.get(partition, 0)
            if running != self._waits.waiting_in(partition):
                continue  # something of it still runs: a predecessor may be among it
            cancelled = partition not in self._tags
            if cancelled or self._waits.stalled(partition, GIVE_BACK_AFTER_S):
                self._give_back(self._waits.take(partition, again=cancelled))

    def _give_back(self, waiters: list[Waiter]) -> None:
        channel = self._channel
        self._pool.forget_aside([w.token for w in waiters])
        given = 0
        tokens = sorted(cast(tuple[int, int], w.token) for w in waiters)  # by delivery tag
        for token in tokens:
            if channel is None or id(channel) != token[0] or not channel.is_open:
                continue  # gone with its channel, counted out with it
            self._frames().nack(token[1], requeue=True)
            self._count_in_flight(-1)
            self._count_running(self._partition_of_delivery.pop(token, None), -1)
            given += 1
        if given:
            fields = {"count": given, "partition": waiters[0].partition}
            log.info(
                "waiting commands given back behind their predecessors", extra={"fields": fields}
            )

    def _on_drain_turn(self) -> None:
        if self._waits.waiting():
            self._give_back_stalled()
