"""The consumer of partitions' share of predecessor chains (docs/ordering.md, "Returned
deliveries out of order"): each ordered delivery's task first asks ``Predecessors`` whether
it may run (a returned one whose predecessor has not passed steps aside), and tells it when
it ended, so what waits for it runs next."""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable
from typing import Any

from worker.backlogs import BacklogRunner
from worker.broker import headers as h
from worker.decision import Decision, Envelope
from worker.delivery import Delivery
from worker.outage import OutageAbandonedError
from worker.predecessors import Passed, Predecessors, key_of
from worker.store import IdempotencyStore
from worker.store.order import OrderStore


class PredecessorWaits(BacklogRunner):
    """Set up by the consumer of partitions (``worker.partitioned``)."""

    _waits: Predecessors

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
        return functools.partial(self._run_in_chain, token, key, own, after, returned, gate)

    def _run_in_chain(
        self,
        token: Hashable,
        key: str,
        own: str | None,
        after: str | None,
        returned: bool,
        gate: Callable[[], Decision],
    ) -> Decision:
        self._waits.check(token, key, own, after, returned)
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
