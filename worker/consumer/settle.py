"""An outcome carried out on the connection's thread: its publishes, and once the broker
confirmed them all, the ack on the channel that delivered the command."""

from __future__ import annotations

import functools
import logging
import time
from concurrent.futures import Future
from typing import Any

from worker.broker.confirms import ConfirmGroup
from worker.broker.publishing import carry_out_confirmed
from worker.consumer.state import ConsumerState
from worker.decision import Decision, Envelope
from worker.delivery import Delivery
from worker.fallback import describe, infrastructure_retry, unexpected_decision
from worker.store import StoreError

log = logging.getLogger("worker.consumer")


class Settling(ConsumerState):
    def _owns(self, delivery: Delivery) -> bool:
        # Only the delivering channel may ack; after it is gone the broker redelivers.
        channel = delivery.channel
        return channel is self._channel and channel.is_open and self._confirms is not None

    def on_processed(self, delivery: Delivery, envelope: Envelope, future: Future[Any]) -> None:
        if not self._take_from_transit(delivery):
            return  # counted out with its lost connection; the broker redelivers it
        if not self._owns(delivery):
            self._count_in_flight(-1)
            return
        exc = future.exception()
        decision = future.result() if exc is None else self._unexpected(envelope, exc)
        self._settle(delivery, envelope, decision)

    def _unexpected(self, envelope: Envelope, exc: BaseException) -> Decision:
        # A bug or a store outage, not the command's fault: retried later, parked at last.
        if isinstance(exc, StoreError):
            fields = {"error": describe(exc), "correlation_id": envelope.correlation_id}
            log.warning("store unavailable; command retried later", extra={"fields": fields})
        elif self._observer is not None:
            self._observer.command_crashed(envelope, exc)
        else:
            log.error("unexpected error", exc_info=exc)
        return unexpected_decision(envelope, exc, self._settings.retry_delays_s)

    def _settle(self, delivery: Delivery, envelope: Envelope, decision: Decision) -> None:
        """Publish what ``decision`` needs; ``on_confirmed`` acks once all are confirmed."""
        confirms = self._confirms
        assert confirms is not None
        with delivery.trace.resumed():  # the event and copies carry the command's span
            failure = carry_out_confirmed(
                confirms,
                self._topology,
                delivery.body,
                delivery.properties,
                delivery.routing_key,
                decision,
                functools.partial(self.on_confirmed, delivery, envelope, decision),
            )
        if failure is not None:  # e.g. a value pika cannot encode: never end the consumer
            self._count_in_flight(-1)
            log.error(
                "outcome not publishable; the broker dead-letters the command",
                extra={"fields": {"error": describe(failure)}},
            )
            self._frames().nack(delivery.delivery_tag, requeue=False)

    def _frames(self) -> Any:
        assert self._consuming is not None
        return self._consuming.frames

    def on_confirmed(
        self, delivery: Delivery, envelope: Envelope, decision: Decision, group: ConfirmGroup
    ) -> None:
        """Every publish of the outcome is confirmed (or refused): ack, or retry later."""
        self._count_in_flight(-1)
        if not self._owns(delivery):
            return
        returned = group.returned_exchanges()
        events_exchange = self._topology.events_exchange
        if group.refused(events_exchange):
            self._on_refused(delivery, envelope, decision, group)
            return
        if events_exchange in returned:
            # Nobody subscribed to this event; it stays in the store for a replay.
            log.warning("event unroutable", extra={"fields": {"routing_key": decision.routing_key}})
            if self._metrics is not None:
                self._metrics.event_unroutable()
        # Sent with this turn's other frames when the loop next polls (see ConfirmTracker).
        self._frames().ack(delivery.delivery_tag)
        if self._observer is not None:
            with delivery.trace.resumed():  # its log line names the command's trace and span
                duration_s = time.monotonic() - delivery.started_at
                self._observer.command_done(envelope, decision, duration_s)

    def _on_refused(
        self, delivery: Delivery, envelope: Envelope, decision: Decision, group: ConfirmGroup
    ) -> None:
        """The event or the parked copy did not reach a queue: the command comes back from a
        delay tier and publishes it again (the store makes that safe)."""
        why = f"the broker refused a publish of the outcome (nacked: {group.nacked})"
        log.error("publish refused; command retried later", extra={"fields": {"reason": why}})
        if decision.outcome == "retry":
            # The delay tier itself refused it: keep it in the queue, nothing else is left.
            self._frames().nack(delivery.delivery_tag, requeue=True)
            return
        self._count_in_flight(1)
        retry = infrastructure_retry(envelope, why, self._settings.retry_delays_s)
        self._settle(delivery, envelope, retry)
