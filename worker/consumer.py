"""The consumer loop: one connection, one channel, owned by the main thread.

pika is not thread-safe. The main thread pumps the connection (which keeps heartbeats
flowing however slow the API is), decodes each delivery and hands it to the keyed pool;
the pool thread's ``Decision`` comes back through ``add_callback_threadsafe`` and is
carried out here: publish, and once the broker confirmed every publish (tracked by
``ConfirmTracker``, without a round trip per message), ack on the channel that delivered it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
import signal
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from pika.exceptions import AMQPError

from contracts import InvalidCommand, command_customer, decode_command
from worker.broker import headers as h
from worker.broker.confirms import ConfirmGroup, ConfirmTracker, GroupPublisher
from worker.broker.connection import connect
from worker.broker.publishing import dead_letter, publish_result, schedule_retry
from worker.broker.topology import Topology
from worker.config import Settings
from worker.decision import Decision, Envelope
from worker.execute import Executor
from worker.observability import tracing
from worker.ordering import KeyedSerialExecutor

log = logging.getLogger(__name__)

PUMP_S = 0.1  # longest the loop waits for I/O before it checks for a stop request
RECONNECT_BASE_S = 0.5
DELIVERY_COUNT_HEADER = "x-delivery-count"  # set by quorum queues on each redelivery


@dataclass(frozen=True)
class Delivery:
    channel: Any
    delivery_tag: int
    routing_key: str
    properties: Any
    body: bytes
    started_at: float
    trace: Any = tracing.UNTRACED  # the command's span (worker.observability.tracing)


class Consumer:
    def __init__(
        self,
        settings: Settings,
        executor: Executor,
        topology: Topology,
        *,
        metrics: Any = None,
        health: Any = None,
        observer: Any = None,
    ) -> None:
        self._settings = settings
        self._executor = executor
        self._topology = topology
        self._metrics = metrics
        self._health = health
        self._observer = observer  # called with (envelope, decision, duration_s) per outcome
        self._pool = KeyedSerialExecutor(settings.pool_threads)
        self._connection: Any = None
        self._channel: Any = None
        self._confirms: ConfirmTracker | None = None
        self._consumer_tag: str | None = None
        self._stopping = threading.Event()
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()

    # -- life cycle -------------------------------------------------------------------

    def request_stop(self, *_: Any) -> None:
        """Signal-safe: the loop notices within PUMP_S and starts draining."""
        self._stopping.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def run(self) -> None:
        """Consume until asked to stop, reconnecting whenever the broker goes away.

        The first connection gets ``startup_connect_attempts`` tries and then raises
        ``BrokerUnreachable``: a worker that never reached its broker should say so and exit.
        """
        self._connect(attempts=self._settings.startup_connect_attempts)
        failures = 0
        while not self._stopping.is_set():
            try:
                if self._connection is None:
                    self._connect(attempts=1)
                    failures = 0
                self._consume_until_stopped()
            except AMQPError as exc:
                self._on_connection_lost(exc)
                failures += 1
                self._back_off(failures)
        self._drain()

    def _connect(self, attempts: int) -> None:
        self._connection = connect(
            self._settings.amqp_url,
            attempts=attempts,
            max_backoff_s=self._settings.reconnect_max_s,
            connection_name=f"provisioner {self._settings.worker_id}",
        )
        channel = self._connection.channel()
        self._topology.declare(channel)
        self._confirms = ConfirmTracker(self._connection, channel)
        channel.basic_qos(prefetch_count=self._settings.prefetch)
        self._consumer_tag = channel.basic_consume(
            self._topology.commands_queue, self.on_message, auto_ack=False
        )
        self._channel = channel
        self._set_health(connected=True, consuming=True)
        log.info("consuming", extra={"fields": {"queue": self._topology.commands_queue}})

    def _consume_until_stopped(self) -> None:
        while not self._stopping.is_set():
            self._connection.process_data_events(time_limit=PUMP_S)
            if self._health is not None:
                self._health.tick()

    def _on_connection_lost(self, exc: BaseException) -> None:
        log.warning("broker connection lost", extra={"fields": {"error": type(exc).__name__}})
        self._set_health(connected=False, consuming=False)
        self._channel = None
        if self._confirms is not None:
            # Published but unconfirmed: their commands return to the queue unacked.
            for _ in range(self._confirms.abandon()):
                self._count_in_flight(-1)
            self._confirms = None
        # Not yet started: their messages return to the queue with the dead channel.
        self._pool.drop_waiting()
        if self._connection is not None:
            with contextlib.suppress(Exception):  # the connection is already gone
                self._connection.close()
            if self._metrics is not None:
                self._metrics.broker_reconnected()
        self._connection = None

    def _back_off(self, failures: int) -> None:
        cap = self._settings.reconnect_max_s
        delay = random.uniform(0, min(cap, RECONNECT_BASE_S * 2**failures))
        deadline = time.monotonic() + delay
        while not self._stopping.is_set() and time.monotonic() < deadline:
            if self._health is not None:
                self._health.tick()  # alive, just not connected
            self._stopping.wait(min(PUMP_S, max(0.0, deadline - time.monotonic())))

    def _drain(self) -> None:
        """Stop taking messages, finish what runs (bounded), hand back the rest unacked."""
        log.info("draining", extra={"fields": {"in_flight": self._in_flight}})
        self._pool.drop_waiting()
        channel, connection = self._channel, self._connection
        deadline = time.monotonic() + self._settings.drain_timeout_s
        try:
            if channel is not None and channel.is_open and self._consumer_tag:
                channel.basic_cancel(self._consumer_tag)
            while connection is not None and self._in_flight > 0:
                if time.monotonic() >= deadline:
                    log.warning("drain timed out", extra={"fields": {"left": self._in_flight}})
                    break
                connection.process_data_events(time_limit=PUMP_S)
        except AMQPError as exc:
            log.warning("broker lost while draining", extra={"fields": {"error": str(exc)}})
        finally:
            self._set_health(connected=False, consuming=False)
            self._pool.shutdown(wait=False)
            if connection is not None and connection.is_open:
                connection.close()  # unacked deliveries go back to the queue
        log.info("stopped")

    def _set_health(self, *, connected: bool, consuming: bool) -> None:
        if self._health is not None:
            self._health.set_connected(connected)
            self._health.set_consuming(consuming)
        if self._metrics is not None:
            self._metrics.broker_connected_changed(connected)

    # -- deliveries -------------------------------------------------------------------

    def on_message(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        trace = tracing.delivered(self._topology.commands_queue, method, properties)
        delivery = Delivery(
            channel,
            method.delivery_tag,
            method.routing_key,
            properties,
            body,
            time.monotonic(),
            trace,
        )
        envelope = self._envelope(properties, body)
        key = command_customer(envelope.command) if envelope.command is not None else None
        self._count_in_flight(1)
        task = trace.wrap(functools.partial(self._executor.process, envelope), envelope)
        done = functools.partial(self._on_done_in_pool, delivery, envelope)
        self._pool.submit(key, task, done)

    @staticmethod
    def _envelope(properties: Any, body: bytes) -> Envelope:
        correlation_id = properties.correlation_id or properties.message_id
        attempts = h.attempts_of(properties)
        redeliveries = int((properties.headers or {}).get(DELIVERY_COUNT_HEADER) or 0)
        try:
            return Envelope(decode_command(body), None, correlation_id, attempts, redeliveries)
        except InvalidCommand as exc:
            return Envelope(None, exc, correlation_id, attempts, redeliveries)

    def _on_done_in_pool(self, delivery: Delivery, envelope: Envelope, future: Future[Any]) -> None:
        # Runs on a pool thread: only add_callback_threadsafe may touch the connection.
        connection = self._connection
        callback = functools.partial(self.on_processed, delivery, envelope, future)
        if connection is None or not connection.is_open:
            self._forget(delivery)
            return
        try:
            connection.add_callback_threadsafe(callback)
        except Exception:  # the connection closed under us: the broker redelivers
            self._forget(delivery)

    def _forget(self, delivery: Delivery) -> None:
        self._count_in_flight(-1)
        log.info("outcome dropped: channel gone, the broker will redeliver")

    def _count_in_flight(self, delta: int) -> None:
        with self._in_flight_lock:  # pool threads decrement for outcomes they drop
            self._in_flight += delta
        if self._metrics is not None:
            self._metrics.in_flight(delta)

    def on_processed(self, delivery: Delivery, envelope: Envelope, future: Future[Any]) -> None:
        channel, confirms = delivery.channel, self._confirms
        if channel is not self._channel or not channel.is_open or confirms is None:
            self._count_in_flight(-1)
            return  # only the delivering channel may ack; the broker will redeliver
        exc = future.exception()
        if exc is not None:
            self._count_in_flight(-1)
            self._on_unexpected(delivery, envelope, exc)
            return
        decision: Decision = future.result()
        group = confirms.group(functools.partial(self.on_confirmed, delivery, envelope, decision))
        with delivery.trace.resumed():  # the event and copies carry the command's span
            self._carry_out(delivery, decision, confirms.publisher(group))
        confirms.seal(group)

    def on_confirmed(
        self, delivery: Delivery, envelope: Envelope, decision: Decision, group: ConfirmGroup
    ) -> None:
        """Every publish of the outcome is confirmed (or refused): ack or requeue."""
        self._count_in_flight(-1)
        channel = delivery.channel
        if channel is not self._channel or not channel.is_open:
            return
        returned = group.returned_exchanges()
        events_exchange = self._topology.events_exchange
        if group.nacked or returned - {events_exchange}:
            # The event or the parked copy did not reach a queue: keep the command, so the
            # next delivery publishes it again (the store makes that safe).
            log.error(
                "publish refused; command requeued", extra={"fields": {"nacked": group.nacked}}
            )
            channel._impl.basic_nack(delivery.delivery_tag, requeue=True)
            return
        if events_exchange in returned:
            # Nobody subscribed to this event; it stays in the store for a replay.
            log.warning("event unroutable", extra={"fields": {"routing_key": decision.routing_key}})
            if self._metrics is not None:
                self._metrics.event_unroutable()
        # Sent with this turn's other frames when the loop next polls (see ConfirmTracker).
        channel._impl.basic_ack(delivery.delivery_tag)
        if self._observer is not None:
            self._observer.command_done(envelope, decision, time.monotonic() - delivery.started_at)

    def _carry_out(self, delivery: Delivery, decision: Decision, publisher: GroupPublisher) -> None:
        props = delivery.properties
        if decision.retry_in_s is not None:
            schedule_retry(
                publisher,
                self._topology,
                delivery.body,
                props,
                delivery.routing_key,
                decision.retry_in_s,
                decision.last_error or "",
                count_attempt=decision.count_attempt,
            )
            return
        assert decision.event is not None and decision.routing_key is not None
        correlation_id = props.correlation_id or props.message_id
        publish_result(
            publisher,
            self._topology,
            decision.event,
            decision.routing_key,
            correlation_id,
            props.reply_to,
        )
        if decision.dead_letter is not None:
            dl = decision.dead_letter
            dead_letter(
                publisher,
                self._topology,
                delivery.body,
                props,
                delivery.routing_key,
                reason=dl.reason,
                error_code=dl.error_code,
                last_error=dl.last_error,
            )

    def _on_unexpected(self, delivery: Delivery, envelope: Envelope, exc: BaseException) -> None:
        # A bug, not a business failure: requeue; the delivery limit parks a poison message.
        if self._observer is not None:
            self._observer.command_crashed(envelope, exc)
        else:
            log.error("unexpected error", exc_info=exc)
        delivery.channel.basic_nack(delivery.delivery_tag, requeue=True)
