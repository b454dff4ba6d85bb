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
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from pika.exceptions import AMQPError

from contracts import command_customer
from worker.broker.addresses import BrokerAddresses, redact_url
from worker.broker.channel import ConsumingChannel
from worker.broker.confirms import ConfirmGroup, ConfirmTracker
from worker.broker.connection import connect
from worker.broker.publishing import carry_out
from worker.broker.topology import Topology
from worker.config import Settings, drain_bound_s
from worker.decision import Decision, Envelope
from worker.delivery import Delivery, read_delivery
from worker.execute import Executor
from worker.fallback import describe, infrastructure_retry, unexpected_decision
from worker.observability import tracing
from worker.observability.broker_report import BrokerReport
from worker.ordering import KeyedSerialExecutor
from worker.store import StoreError

log = logging.getLogger(__name__)

PUMP_S = 0.1  # longest the loop waits for I/O before it checks for a stop request
RECONNECT_BASE_S = 0.5


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
        self._report = BrokerReport(health, metrics)
        self._observer = observer  # called with (envelope, decision, duration_s) per outcome
        self._pool = KeyedSerialExecutor(settings.pool_threads)
        # The nodes of the cluster: a reconnection starts at the node after the lost one.
        self._addresses = BrokerAddresses.parse(settings.amqp_url)
        self._connection: Any = None
        self._consuming: ConsumingChannel | None = None
        self._channel: Any = None
        self._confirms: ConfirmTracker | None = None
        self._blocked = False
        self._held: list[Delivery] = []  # delivered while blocked: started once unblocked
        self._stopping = threading.Event()
        self._in_flight = 0
        # Outcomes on their way to the connection's thread (add_callback_threadsafe): a
        # callback queued on a connection that is then lost never runs, so they are counted
        # out with the connection (``_sweep_transit``), each exactly once.
        self._in_transit: dict[int, Delivery] = {}
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
            self._addresses,
            attempts=attempts,
            max_backoff_s=self._settings.reconnect_max_s,
            connection_name=f"provisioner {self._settings.worker_id}",
            blocked_timeout_s=self._settings.confirm_timeout_s,
        )
        self._connection.add_on_connection_blocked_callback(self.on_blocked)
        self._connection.add_on_connection_unblocked_callback(self.on_unblocked)
        self._report.state(connected=True, consuming=False)
        self._open_channel()

    def _open_channel(self) -> None:
        queue = self._consumed_queue()
        consuming = ConsumingChannel(
            self._connection, self._topology, self._settings.prefetch, self.on_message, queue
        )
        self._consuming, self._channel = consuming, consuming.channel
        self._confirms = consuming.confirms
        self._report.state(connected=True, consuming=True)
        broker = redact_url(self._addresses.in_use or "")
        log.info("consuming", extra={"fields": {"queue": queue, "broker": broker}})

    def _consumed_queue(self) -> str | None:
        """The queue the channel consumes (``worker.partitioned``: its partitions instead)."""
        return self._topology.commands_queue

    def _on_pump(self) -> None:
        """After each turn of the loop, on the connection's thread (a hook)."""

    def _consume_until_stopped(self) -> None:
        while not self._stopping.is_set():
            self._connection.process_data_events(time_limit=PUMP_S)
            self._report.tick()
            self._on_pump()
            assert self._consuming is not None
            problem = self._consuming.problem(
                self._settings.confirm_timeout_s, blocked=self._blocked
            )
            if problem is not None:
                self._reopen_channel(*problem)

    def _reopen_channel(self, kind: str, reason: str) -> None:
        """The broker closed the channel or cancelled the consumer: a new channel, the
        topology declared again, consuming again. Results of the old channel's deliveries
        are dropped (those messages come back; the store answers them without the API)."""
        self._report.channel_lost(kind, reason)
        old = self._consuming
        self._abandon_channel()
        if old is not None:
            old.close()
        self._open_channel()

    def _abandon_channel(self) -> None:
        """Forget the channel's deliveries: each is counted out of ``in_flight`` once."""
        self._channel, self._consuming = None, None
        if self._confirms is not None:
            # Published but unconfirmed: their commands return to the queue unacked.
            self._count_in_flight(-self._confirms.abandon())
            self._confirms = None
        # Not yet started: their messages return to the queue with the dead channel.
        self._drop_waiting()
        self._held.clear()

    def _drop_waiting(self) -> None:
        self._count_in_flight(-self._pool.drop_waiting())

    def _on_connection_lost(self, exc: BaseException) -> None:
        self._report.connection_lost(describe(exc))
        self._abandon_channel()
        self._sweep_transit()
        if self._blocked:
            self.on_unblocked(None, None)  # a new connection starts unblocked
        if self._connection is not None:
            with contextlib.suppress(Exception):  # the connection is already gone
                self._connection.close()
            self._report.reconnecting()
        self._connection = None

    def _back_off(self, failures: int) -> None:
        cap = self._settings.reconnect_max_s
        delay = random.uniform(0, min(cap, RECONNECT_BASE_S * 2**failures))
        deadline = time.monotonic() + delay
        while not self._stopping.is_set() and time.monotonic() < deadline:
            self._report.tick()  # alive, just not connected
            self._stopping.wait(min(PUMP_S, max(0.0, deadline - time.monotonic())))

    def _drain(self) -> None:
        """Stop taking messages and finish what runs; only once no call runs any more, hand
        back the unstarted messages (closing the connection). A call handed back while it
        runs would be taken by another worker at once, so the wait is bounded by the worst
        case of one execution, not just the drain timeout; the liveness thread keeps this
        worker's heartbeat and leases fresh meanwhile."""
        bound_s = drain_bound_s(self._settings)
        log.info(
            "draining",
            extra={"fields": {"in_flight": self._in_flight, "bound_s": bound_s}},
        )
        self._drop_waiting()
        self._held.clear()
        consuming, connection = self._consuming, self._connection
        started = time.monotonic()
        try:
            if consuming is not None and consuming.channel.is_open and consuming.consumer_tag:
                consuming.channel.basic_cancel(consuming.consumer_tag)
            self._wait_for_calls(connection, started + bound_s)
        except AMQPError as exc:
            log.warning("broker lost while draining", extra={"fields": {"error": str(exc)}})
            self._sweep_transit()
            self._wait_for_calls(None, started + bound_s)
        finally:
            self._report.state(connected=False, consuming=False)
            self._pool.shutdown(wait=False)
            if connection is not None and connection.is_open:
                connection.close()  # unstarted deliveries go back to the queue
        log.info("stopped")

    def _wait_for_calls(self, connection: Any, deadline: float) -> None:
        """Until nothing is in flight (published and acked, or dropped) or ``deadline``;
        pumping the connection while it is open, so outcomes still go out."""
        warned = False
        drain_deadline = time.monotonic() + self._settings.drain_timeout_s
        while self._in_flight > 0:
            now = time.monotonic()
            if now >= deadline:
                log.error(
                    "calls still running at the drain bound",
                    extra={"fields": {"left": self._in_flight}},
                )
                return
            if now >= drain_deadline and not warned:
                warned = True
                log.warning(
                    "drain timeout passed; waiting for the calls still running",
                    extra={"fields": {"left": self._in_flight}},
                )
            if connection is not None and connection.is_open:
                connection.process_data_events(time_limit=PUMP_S)
            else:
                time.sleep(PUMP_S)  # outcomes are dropped now; only the pool's threads matter

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
        # Runs on a pool thread: only add_callback_threadsafe may touch the connection.
        connection = self._connection
        callback = functools.partial(self.on_processed, delivery, envelope, future)
        with self._in_flight_lock:
            self._in_transit[id(delivery)] = delivery
        if connection is None or not connection.is_open:
            self._forget(delivery)
            return
        try:
            connection.add_callback_threadsafe(callback)
        except Exception:  # the connection closed under us: the broker redelivers
            self._forget(delivery)

    def _forget(self, delivery: Delivery) -> None:
        if self._take_from_transit(delivery):
            self._count_in_flight(-1)
            log.info("outcome dropped: channel gone, the broker will redeliver")

    def _take_from_transit(self, delivery: Delivery) -> bool:
        """True for whoever takes ``delivery`` out of transit first: it counts it out."""
        with self._in_flight_lock:
            return self._in_transit.pop(id(delivery), None) is not None

    def _sweep_transit(self) -> None:
        """The connection is gone with the callbacks queued on it: their deliveries come
        back from the broker, and are counted out of ``in_flight`` here."""
        with self._in_flight_lock:
            lost = len(self._in_transit)
            self._in_transit.clear()
        if lost:
            self._count_in_flight(-lost)

    def _count_in_flight(self, delta: int) -> None:
        with self._in_flight_lock:  # pool threads decrement for outcomes they drop
            self._in_flight += delta
        if self._metrics is not None:
            self._metrics.in_flight(delta)

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
        group = confirms.group(functools.partial(self.on_confirmed, delivery, envelope, decision))
        try:
            with delivery.trace.resumed():  # the event and copies carry the command's span
                carry_out(
                    confirms.publisher(group),
                    self._topology,
                    delivery.body,
                    delivery.properties,
                    delivery.routing_key,
                    decision,
                )
        except AMQPError:
            raise
        except Exception as exc:  # e.g. a value pika cannot encode: never end the consumer
            confirms.discard(group)
            self._count_in_flight(-1)
            log.error(
                "outcome not publishable; the broker dead-letters the command",
                extra={"fields": {"error": describe(exc)}},
            )
            self._frames().nack(delivery.delivery_tag, requeue=False)
            return
        confirms.seal(group)

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
        if group.nacked or returned - {events_exchange}:
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
