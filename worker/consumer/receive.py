"""A delivery on the connection's thread: read into an ``Envelope`` and handed to the keyed
pool, whose thread sends the outcome back with ``add_callback_threadsafe``; deliveries that
arrive while the broker blocks the connection wait until it unblocks."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from contracts import command_customer
from worker.consumer.settle import Settling
from worker.consumer.state import Outcome
from worker.decision import Decision, Envelope
from worker.delivery import Delivery, read_delivery
from worker.fallback import describe
from worker.observability import tracing

log = logging.getLogger("worker.consumer")


class Receiving(Settling):
    # -- the connection's state -------------------------------------------------------

    def on_blocked(self, _connection: Any, frame: Any) -> None:
        reason = str(getattr(getattr(frame, "method", None), "reason", "") or "resource alarm")
        self._blocked = True
        self._report.blocked(reason)

    def on_unblocked(self, _connection: Any, _frame: Any) -> None:
        self._blocked = False
        self._report.unblocked(len(self._held))
        held, self._held = self._held, []
        for delivery in held:
            self._start(delivery)

    # -- deliveries -------------------------------------------------------------------

    def on_message(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        if self._consuming is not None and channel is self._channel:
            self._consuming.frames.delivered(method.delivery_tag)  # unsettled until acked
        try:
            delivery = self._delivery(channel, method, properties, body)
        except Exception as exc:  # never end the consumer; the broker dead-letters it
            log.error("delivery unreadable; rejected", extra={"fields": {"error": describe(exc)}})
            self._frames().nack(method.delivery_tag, requeue=False)
            return
        if self._blocked:
            self._held.append(delivery)
            return
        self._start(delivery)

    def _delivery(self, channel: Any, method: Any, properties: Any, body: bytes) -> Delivery:
        return Delivery(
            channel,
            method.delivery_tag,
            method.routing_key,
            properties,
            body,
            time.monotonic(),
            bool(method.redelivered),
            tracing.delivered(self._topology.commands_queue, method, properties),
        )

    def _start(self, delivery: Delivery) -> None:
        self._count_in_flight(1)
        try:
            envelope = self._envelope(delivery)
            key = self._ordering_key(delivery, envelope)
        except Exception as exc:  # reading one delivery must never end the consumer
            envelope = Envelope(None, None, None, 0)
            self._settle(delivery, envelope, self._unexpected(envelope, exc))
            return
        task = delivery.trace.wrap(self._task(delivery, envelope), envelope)
        done = functools.partial(self._on_done_in_pool, delivery, envelope)
        self._pool.submit(key, task, done)

    def _ordering_key(self, delivery: Delivery, envelope: Envelope) -> str | None:
        """The pool runs the commands of one key one at a time, in delivery order."""
        return command_customer(envelope.command) if envelope.command is not None else None

    def _task(self, delivery: Delivery, envelope: Envelope) -> Callable[[], Decision]:
        """What the pool runs (``worker.partitioned`` puts its order gate in front)."""
        return functools.partial(self._executor.process, envelope)

    def _envelope(self, delivery: Delivery) -> Envelope:
        reading = read_delivery(delivery, self._settings.max_body_bytes)
        if reading.ignored_headers:
            message_id = delivery.properties.message_id
            self._report.headers_ignored(reading.ignored_headers, message_id)
        return reading.envelope

    def _on_done_in_pool(self, delivery: Delivery, envelope: Envelope, future: Future[Any]) -> None:
        # Runs on a pool thread: only add_callback_threadsafe may touch the connection. The
        # outcomes that finish while one hop is queued ride on it: one wake-up of the
        # connection's thread (a pipe write, a lock, a poll) per turn, not per command.
        connection = self._connection
        with self._in_flight_lock:
            self._in_transit[id(delivery)] = delivery
            self._outcomes.append((delivery, envelope, future))
            if self._outcomes_hop_queued:
                return
            self._outcomes_hop_queued = True
        if connection is None or not connection.is_open:
            self._drop_outcomes()
            return
        try:
            connection.add_callback_threadsafe(self.take_outcomes)
        except Exception:  # the connection closed under us: the broker redelivers
            self._drop_outcomes()

    def take_outcomes(self) -> None:
        """On the connection's thread: settle every outcome the hop carries."""
        for delivery, envelope, future in self._unqueue_outcomes():
            self.on_processed(delivery, envelope, future)

    def _drop_outcomes(self) -> None:
        for delivery, _, _ in self._unqueue_outcomes():
            self._forget(delivery)

    def _unqueue_outcomes(self) -> list[Outcome]:
        """The outcomes queued for the hop, taken; the next outcome queues a hop again."""
        with self._in_flight_lock:
            outcomes, self._outcomes = self._outcomes, []
            self._outcomes_hop_queued = False
        return outcomes
