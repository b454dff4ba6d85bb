"""The connection's life on the main thread: connect, consume until asked to stop,
reconnect whenever the broker goes away, and drain at the end."""

from __future__ import annotations

import contextlib
import logging
import random
import signal
import time
from typing import Any

from pika.exceptions import AMQPError

from worker.broker.addresses import redact_url
from worker.broker.channel import ConsumingChannel
from worker.broker.connection import connect
from worker.config import drain_bound_s
from worker.consumer.receive import Receiving
from worker.fallback import describe

log = logging.getLogger("worker.consumer")

PUMP_S = 0.1  # longest the loop waits for I/O before it checks for a stop request
RECONNECT_BASE_S = 0.5


class Consumer(Receiving):
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
            self._connection,
            self._topology,
            self._settings.prefetch,
            self.on_message,
            queue,
            batch_acks=True,
        )
        self._consuming, self._channel = consuming, consuming.channel
        self._confirms = consuming.confirms
        self._report.state(connected=True, consuming=True)
        broker = redact_url(self._addresses.in_use or "")
        log.info("consuming", extra={"fields": {"queue": queue, "broker": broker}})

    def _consumed_queue(self) -> str | None:
        """The queue the channel consumes (``worker.partitioned``: its partitions instead)."""
        return self._topology.commands_queue

    def _flush_acks(self) -> None:
        """The turn's acks, as few frames as possible (``worker.broker.acks``)."""
        if self._consuming is not None and self._consuming.channel.is_open:
            self._consuming.frames.flush_acks()

    def _on_drain_turn(self) -> None:
        """Each turn of the drain's wait, on the connection's thread (a hook)."""

    def _on_pump(self) -> None:
        """After each turn of the loop, on the connection's thread (a hook)."""

    def _consume_until_stopped(self) -> None:
        while not self._stopping.is_set():
            self._connection.process_data_events(time_limit=PUMP_S)
            self._flush_acks()
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
                    extra={"fields": {"left": self._in_flight, **self._in_flight_parts()}},
                )
            if connection is not None and connection.is_open:
                self._on_drain_turn()
                connection.process_data_events(time_limit=PUMP_S)
                self._flush_acks()
            else:
                time.sleep(PUMP_S)  # outcomes are dropped now; only the pool's threads matter
