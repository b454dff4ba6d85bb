"""The sequencer: the one consumer of the intake queue, republishing each command to its
customer's partition (docs/ordering.md).

It runs on its own thread and connection in every worker process, and consumes only while
this process holds the sequencer lease (``Ownership.is_sequencer``): one consumer of one
queue sees the broker's order, and one channel publishing keeps it on each partition. Each
command is acked on the intake once its republish is confirmed (``ConfirmTracker``, no
round trip per message), so a crash returns it to the intake rather than losing it.

The ordering key is the customer, or what ``ChangeUsername`` made it an alias of: the map
lives in the store (written before the rename is republished) and in memory here.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pika
from pika.exceptions import AMQPError

from worker.broker import headers as h
from worker.broker.addresses import BrokerAddresses
from worker.broker.channel import ConsumingChannel
from worker.broker.confirms import ConfirmGroup, ConfirmTracker
from worker.broker.connection import connect
from worker.broker.topology import Topology
from worker.config import Settings
from worker.observability.health import Downtime
from worker.observability.redact import redact_text
from worker.partitions import START_FRESH_SHARE, Ownership
from worker.repartition import Repartitioner
from worker.routing import (
    ALIAS_TOUCH_EVERY_S,
    Routed,
    Router,
    customer_of,
    partition_of,
    usable_name,
)
from worker.store import StoreError
from worker.store.order_upkeep import OrderUpkeep

log = logging.getLogger(__name__)

PUMP_S = 0.1
IDLE_S = 0.2  # how often a process without the lease looks again
SEQUENCER_PREFETCH = 512  # intake deliveries in flight: republishes awaiting their confirm
RECONNECT_S = 1.0
CLOSE_WAIT_S = 5.0  # for the broker's close-ok of the intake channel
# Holding the lease without consuming the intake longer than this makes the process unready:
# a reconnection takes RECONNECT_S and the time to connect.
INTAKE_DOWN_GRACE_S = 5 * RECONNECT_S
# Not carried to the partition: the intake's own bookkeeping, and what the sequencer sets.
DROPPED = h.BROKER_DEATH_HEADERS | {h.ORDER_KEY, h.RESEQUENCED, h.AFTER}


class Sequencer(threading.Thread):
    def __init__(
        self,
        settings: Settings,
        topology: Topology,
        ownership: Ownership,
        store: OrderUpkeep,
        metrics: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name="sequencer", daemon=True)
        self._settings, self._topology, self._ownership = settings, topology, ownership
        self._router = Router(store, topology.partitions)
        self._metrics = metrics
        self._addresses = BrokerAddresses.parse(settings.amqp_url)
        self._repartition = Repartitioner(
            store,
            topology,
            self._addresses,
            f"provisioner repartition {settings.worker_id}",
        )
        self._connection: Any = None
        self._channel: Any = None
        self._confirms: ConfirmTracker | None = None
        self._consuming: ConsumingChannel | None = None
        # Intake deliveries in delivery order -> republish confirmed (acked in batches).
        self._unsettled: dict[int, bool] = {}
        self._reset = False  # a message failed half-way: its confirm count may be off
        self._intake = Downtime(INTAKE_DOWN_GRACE_S, clock=clock)  # while holding the lease
        self.stopped = threading.Event()

    def problem(self) -> str | None:
        """For /readyz: why this process, the sequencer, does not move the intake."""
        if self.ident is not None and not self.is_alive() and not self.stopped.is_set():
            return "the sequencer's thread ended"
        return self._intake.problem("holds the sequencer lease but has not consumed the intake")

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self._turn()
            except (AMQPError, StoreError, OSError) as exc:
                log.warning("sequencer lost", extra={"fields": {"error": type(exc).__name__}})
                self._intake.down(redact_text(f"{type(exc).__name__}: {exc}")[:300])
                self._close()
                self._repartition.close()
                self.stopped.wait(RECONNECT_S)
            except Exception as exc:  # a bug must not end the thread: the intake would stall
                log.exception("sequencer failed; starting again")
                self._intake.down(f"failed: {type(exc).__name__}")
                self._close()
                self.stopped.wait(RECONNECT_S)
        self._close()
        self._repartition.close()

    def _turn(self) -> None:
        """One round: idle while not the sequencer or while P changes, else move the intake."""
        if not self._ownership.is_sequencer():
            self._intake.up()  # not ours to consume
            self._close()
            self._repartition.close()
            self.stopped.wait(IDLE_S)
            return
        plan = self._ownership.partitioning()
        if plan.to_change:  # routing paused: the intake keeps what arrives
            self._intake.up()  # paused on purpose, not a fault of this process
            self._close()
            self._repartition.step(plan)
            self.stopped.wait(IDLE_S)
            return
        if self._connection is None:
            self._intake.down()
            if not self._ownership.is_sequencer(START_FRESH_SHARE):
                self.stopped.wait(IDLE_S)  # the next round renews it: start then
                return
            self._router.partitions = plan.partitions
            self._open()
        self._connection.process_data_events(time_limit=PUMP_S)
        self._check_channel()
        if self._reset:
            self._close()  # start over on a new channel
        elif self._consuming is not None:
            self._intake.up()

    def _open(self) -> None:
        self._router.load()
        self._connection = connect(
            self._addresses,
            connection_name=f"provisioner sequencer {self._settings.worker_id}",
        )
        consuming = ConsumingChannel(
            self._connection,
            self._topology,
            SEQUENCER_PREFETCH,
            self.on_message,
            self._topology.commands_queue,
        )
        self._consuming, self._channel = consuming, consuming.channel
        self._confirms = consuming.confirms
        log.info("sequencing", extra={"fields": {"queue": self._topology.commands_queue}})

    def _check_channel(self) -> None:
        """The broker closed the intake channel or cancelled its consumer (the intake
        deleted, its leader moved): start again on a new connection, as after a loss."""
        assert self._consuming is not None
        problem = self._consuming.problem(self._settings.confirm_timeout_s, blocked=False)
        if problem is not None:
            kind, reason = problem
            fields = {"kind": kind, "reason": reason}
            log.warning("sequencer channel lost; reopening", extra={"fields": fields})
            self._intake.down(reason)
            self._close()

    def _close(self) -> None:
        """Unacked intake deliveries return to the intake, in order, for the next holder:
        the channel is closed first without pika's requeue of the undispatched deliveries,
        which would put them ahead of the one that failed (a rename whose alias the store
        did not take would be overtaken by the customer's next command)."""
        connection, consuming = self._connection, self._consuming
        self._connection, self._channel, self._confirms, self._consuming = None, None, None, None
        self._unsettled, self._reset = {}, False
        if connection is not None and connection.is_open:
            with contextlib.suppress(Exception):
                if consuming is not None:
                    consuming.close_keeping_order(CLOSE_WAIT_S)
                connection.close()
            log.info("sequencer stopped")

    def on_message(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        if channel is not self._channel:  # a closing channel's: it returns to the intake
            return
        try:
            self._sequence(channel, method, properties, body)
        except (AMQPError, StoreError):
            raise  # the connection or the store: the loop starts again, the intake redelivers
        except Exception as exc:  # never stall the intake on one message
            fields = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            log.error("command not sequenced; the broker dead-letters it", extra={"fields": fields})
            assert self._consuming is not None
            self._unsettled.pop(method.delivery_tag, None)
            self._consuming.frames.nack(method.delivery_tag, requeue=False)
            self._reset = True

    def _sequence(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        confirms = self._confirms
        assert confirms is not None
        delayed = h.attempts_of(properties) > 0  # a delay-tier copy: its hold keeps its place
        order_key, partition, after = self._router.route_chained(
            body, properties.message_id, delayed
        )
        headers = {k: v for k, v in (properties.headers or {}).items() if k not in DROPPED}
        if order_key is not None:
            headers[h.ORDER_KEY] = order_key
        if after is not None:
            headers[h.AFTER] = after
        # The partition's routing key is its number: keep the publisher's for dead letters.
        headers[h.ORIGINAL_ROUTING_KEY] = h.original_routing_key(properties, method.routing_key)
        redelivered = (
            method.redelivered or h.read_delivery_headers(properties, True).delivery_count > 0
        )
        if redelivered:
            headers[h.RESEQUENCED] = 1  # may already be on the partition: treat as redelivery
        # The same properties go on (no copy per message), persistent, and without user_id,
        # which the broker checks against the publishing connection's user.
        properties.headers = headers
        properties.delivery_mode = pika.DeliveryMode.Persistent.value
        properties.user_id = None
        props = properties
        self._unsettled[method.delivery_tag] = False
        group = confirms.group(functools.partial(self.on_confirmed, channel, method.delivery_tag))
        confirms.publisher(group).basic_publish(
            self._topology.partitions_exchange, str(partition), body, props, mandatory=True
        )
        confirms.seal(group)

    def on_confirmed(self, channel: Any, delivery_tag: int, group: ConfirmGroup) -> None:
        consuming = self._consuming
        if consuming is None or channel is not self._channel or not channel.is_open:
            return  # the intake redelivers it
        if group.nacked or group.returned_exchanges():
            log.error("partition refused a command; returned to the intake")
            self._unsettled.pop(delivery_tag, None)
            consuming.frames.nack(delivery_tag, requeue=True)
        else:
            self._unsettled[delivery_tag] = True
            if self._metrics is not None:
                self._metrics.sequenced()
        self._ack_settled(consuming)

    def _ack_settled(self, consuming: ConsumingChannel) -> None:
        """One ack (``multiple``) for the oldest deliveries whose republish is confirmed."""
        last = None
        for tag, confirmed in self._unsettled.items():
            if not confirmed:
                break
            last = tag
        if last is None:
            return
        while self._unsettled and next(iter(self._unsettled)) <= last:
            del self._unsettled[next(iter(self._unsettled))]
        consuming.frames.ack(last, multiple=True)

    def stop(self) -> None:
        self.stopped.set()


__all__ = [
    "ALIAS_TOUCH_EVERY_S",
    "Routed",
    "Router",
    "Sequencer",
    "customer_of",
    "partition_of",
    "usable_name",
]
