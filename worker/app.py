"""Wiring for ``provisioner run``: settings in, a running worker out."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from worker import __version__
from worker.api import ResellerClient
from worker.broker.addresses import passwords
from worker.broker.topology import Topology
from worker.config import LIVENESS_STORE_CONNECTIONS, Settings
from worker.consumer import Consumer
from worker.decision import Envelope, ExecutorConfig
from worker.execute import Executor
from worker.leases import Liveness
from worker.observability import sentry, traced, tracing
from worker.observability.health import Health
from worker.observability.http import ObservabilityServer
from worker.observability.metrics import Metrics
from worker.observability.redact import register_secret
from worker.order_setup import OrderingParts, ordering_parts
from worker.report import OutcomeReporter
from worker.store import FingerprintKeys, IdempotencyStore, open_store
from worker.store.order import Backend
from worker.store.order_upkeep import OrderUpkeep, alias_retention_s
from worker.store.schema import PURGE_MAX_ROWS_PER_RUN

log = logging.getLogger(__name__)

PURGE_EVERY_S = 3600.0
PURGE_AGAIN_S = 60.0  # after a purge run that hit its bound: the rest soon, not in an hour
LIVENESS_STALL_S = 60.0
LIVENESS_CONNECTIONS = 1  # PostgreSQL: the heartbeat's own, beside the pool of the commands


def register_secrets(settings: Settings) -> None:
    from urllib.parse import urlsplit

    for value in (settings.api_key, *passwords(settings.amqp_url)):
        if value:
            register_secret(value)
    store_password = urlsplit(settings.store_url).password
    if store_password:
        register_secret(store_password)


class StorePurger(threading.Thread):
    """Deletes expired keys and unused aliases, a bounded number per run, on a thread of its
    own: the heartbeat (``worker.leases.Liveness``) never waits behind it."""

    def __init__(self, store: IdempotencyStore, settings: Settings) -> None:
        super().__init__(name="store-purge", daemon=True)
        self._store, self._settings = store, settings
        self._order = OrderUpkeep(cast(Backend, store))
        self.stopped = threading.Event()

    def run(self) -> None:
        delay = 0.0
        while not self.stopped.wait(delay):
            delay = PURGE_EVERY_S
            try:
                purged = self._store.purge_expired(self._settings.retention_days * 86400)
                aliases = self._order.purge(alias_retention_s(self._settings.retention_days))
            except Exception:  # a store blip must not end the purges
                log.exception("purging expired keys failed")
                continue
            fields = {"count": purged, "aliases": aliases}
            log.info("purged expired keys", extra={"fields": fields})
            if max(purged, aliases) >= PURGE_MAX_ROWS_PER_RUN:
                delay = PURGE_AGAIN_S


class ScopedExecutor(Executor):
    """Runs each command in its own Sentry isolation scope; reports unexpected errors."""

    def process(self, envelope: Envelope) -> Any:
        command = envelope.command
        with sentry.message_scope(
            type(command).__name__ if command is not None else "unknown",
            command.idempotency_key if command is not None else None,
            envelope.correlation_id,
            envelope.delayed_attempts + 1,
        ) as scope:
            try:
                decision = super().process(envelope)
            except Exception as exc:
                sentry.capture_unexpected(exc)
                raise
            scope.set_outcome(decision.outcome)
            return decision


def run_worker(
    settings: Settings,
    *,
    install_signals: bool = True,
    http_host: str = "0.0.0.0",
    on_listening: Callable[[int], None] | None = None,
) -> int:
    """One worker process until it is asked to stop. ``on_listening`` hears the port of its
    observability server (the supervisor's children serve on a loopback port 0)."""
    register_secrets(settings)
    sentry.init_sentry(settings.sentry_dsn, release=__version__)
    tracing.configure_from_env(tracing.SERVICE_NAME)
    metrics = Metrics()
    health = Health(stall_after_s=LIVENESS_STALL_S)
    http = ObservabilityServer(http_host, settings.http_port, metrics, health)
    http.start()
    if on_listening is not None:
        on_listening(http.port)
    parts = assemble(settings, metrics, health, http)
    parts.start(install_signals)
    log.info("worker started", extra={"fields": {"worker_id": settings.worker_id}})
    try:
        parts.consumer.run()  # returns once no call runs on the pool any more
    finally:
        parts.stop()
        sentry.flush()  # queued reports must leave before the process does
        tracing.shutdown()  # and the batched spans
    return 0


@dataclass
class WorkerParts:
    """What one worker process runs besides its observability server's start."""

    settings: Settings
    health: Health
    http: ObservabilityServer
    store: IdempotencyStore
    liveness_store: IdempotencyStore
    client: ResellerClient
    consumer: Consumer
    liveness: Liveness
    purger: StorePurger
    order: OrderingParts | None

    def start(self, install_signals: bool) -> None:
        self.liveness.beat()
        self.liveness.start()
        self.purger.start()
        if self.order is not None:
            self.order.start(self.health, self.consumer)
        if install_signals:
            self.consumer.install_signal_handlers()

    def stop(self) -> None:
        """Once the consumer drained: the order parts, the threads, then the connections."""
        if self.order is not None:
            self.order.stop()
        self.purger.stopped.set()
        self.liveness.stopped.set()
        self.liveness.join()
        self.liveness_store.forget_worker(self.settings.worker_id)
        self.http.stop()
        self.client.close()
        if self.liveness_store is not self.store:
            self.liveness_store.close()
        self.store.close()


def assemble(
    settings: Settings, metrics: Metrics, health: Health, http: ObservabilityServer
) -> WorkerParts:
    store = open_store(
        settings.store_url,
        pool_size=settings.store_pool_connections,
        pool_wait_s=settings.store_pool_wait_s,
        busy_timeout_s=settings.store_busy_timeout_s,
    )
    store = traced.traced_store(store, settings.store_url)  # spans when tracing is on
    liveness_store = _liveness_store(settings, store)
    client = ResellerClient.from_settings(settings, on_request=metrics.api_request)
    metrics.watch_api_slots(client.requests_in_flight, settings.concurrency)
    config = executor_config(settings, store.fingerprint_keys())
    executor = ScopedExecutor(client, store, config, metrics)
    topology = Topology.from_settings(settings)
    order = ordering_parts(settings, store, liveness_store, topology, metrics.registry)
    consumer = (Consumer if order is None else order.consumer_class())(
        settings,
        executor,
        topology,
        metrics=metrics,
        health=health,
        observer=OutcomeReporter(metrics),
    )
    liveness = Liveness(
        liveness_store,
        settings.worker_id,
        executor.leases,
        heartbeat_s=settings.worker_heartbeat_s,
        lease_ttl_s=settings.lease_ttl_s,
    )
    purger = StorePurger(store, settings)
    return WorkerParts(
        settings, health, http, store, liveness_store, client, consumer, liveness, purger, order
    )


def _liveness_store(settings: Settings, store: IdempotencyStore) -> IdempotencyStore:
    """A store of the heartbeat's own (its own connection and writer), except in memory,
    where a second one would be another database."""
    if settings.store_url.endswith(":memory:"):
        return store
    return open_store(
        settings.store_url,
        pool_size=LIVENESS_STORE_CONNECTIONS,
        pool_wait_s=settings.store_pool_wait_s,
        busy_timeout_s=settings.store_busy_timeout_s,
    )


def executor_config(settings: Settings, keys: FingerprintKeys) -> ExecutorConfig:
    return ExecutorConfig(
        owner=settings.worker_id,
        retry_delays_s=settings.retry_delays_s,
        immediate_retries=settings.immediate_retries,
        immediate_retry_budget_s=settings.immediate_retry_budget_s,
        resolve_budget_s=settings.resolve_budget_s,
        lease_ttl_s=settings.lease_ttl_s,
        dead_after_s=settings.worker_dead_after_s,
        fingerprint_key=keys.key,
        # Records made before the store had its key were fingerprinted with the API key.
        legacy_fingerprint_key=(settings.api_key or "provisioner").encode()
        if keys.legacy
        else None,
        delivery_limit=settings.delivery_limit,
    )
