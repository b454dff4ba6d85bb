"""What every part of the consumer shares, and its count of the commands in flight.

A command is in flight from its delivery until its ack, or until it is dropped because the
channel or the connection that delivered it is gone (the broker then redelivers it).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from typing import Any

from worker.broker.addresses import BrokerAddresses
from worker.broker.channel import ConsumingChannel
from worker.broker.confirms import ConfirmTracker
from worker.broker.topology import Topology
from worker.config import Settings
from worker.decision import Envelope
from worker.delivery import Delivery
from worker.execute import Executor
from worker.observability.broker_report import BrokerReport
from worker.ordering import KeyedSerialExecutor

log = logging.getLogger("worker.consumer")  # every part of the consumer logs under its name


# A pool thread's finished command on its way to the connection's thread.
Outcome = tuple[Delivery, Envelope, "Future[Any]"]


class ConsumerState:
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
        # Outcomes waiting for the one hop to the connection's thread that carries them all
        # (``Receiving.take_outcomes``), and whether that hop is already queued.
        self._outcomes: list[Outcome] = []
        self._outcomes_hop_queued = False

    # -- commands in flight -----------------------------------------------------------

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
            self._outcomes.clear()
            self._outcomes_hop_queued = False
        if lost:
            self._count_in_flight(-lost)

    def _in_flight_parts(self) -> dict[str, int]:
        """Where the commands in flight are, beyond those running on pool threads."""
        with self._in_flight_lock:
            parts = {"outcomes_in_transit": len(self._in_transit)}
        unconfirmed = self._confirms.pending() if self._confirms is not None else 0
        return {**parts, **self._pool.counts(), "unconfirmed": unconfirmed}

    def _count_in_flight(self, delta: int) -> None:
        with self._in_flight_lock:  # pool threads decrement for outcomes they drop
            self._in_flight += delta
        if self._metrics is not None:
            self._metrics.in_flight(delta)

    def _drop_waiting(self) -> None:
        self._count_in_flight(-self._pool.drop_waiting())
