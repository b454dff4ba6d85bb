"""Prometheus metrics of the worker, each method named for what happened.

``Metrics(registry=None, *, version=None, clock=time.time)`` owns its registry (a fresh
``CollectorRegistry`` unless given), so tests create isolated instances. Every name has the
``provisioner_`` prefix and base units:

- ``commands_total{command_type,outcome}``, ``command_duration_seconds{command_type}``
  <- ``command_finished(command_type, outcome, duration_s)`` (also sets
  ``last_processed_timestamp_seconds``)
- ``api_request_duration_seconds{call,status_class}`` <- ``api_request(call, status_class,
  duration_s)``, the API client's ``on_request`` hook
- ``immediate_retries_total{command_type}`` <- ``immediate_retry(command_type)``
- ``delayed_retries_total{command_type}`` <- ``delayed_retry(command_type)``
- ``dead_lettered_total{reason}`` <- ``dead_lettered(reason)``
- ``idempotent_replays_total{command_type}`` <- ``idempotent_replay(command_type)``
- ``in_flight_commands`` <- ``in_flight(delta)`` (+1 when taken, -1 when settled)
- ``broker_connected`` <- ``broker_connected_changed(connected)``
- ``broker_reconnects_total`` <- ``broker_reconnected()``
- ``events_unroutable_total`` <- ``event_unroutable()``
- ``broker_blocked`` <- ``broker_blocked_changed(blocked)`` (1 during a memory/disk alarm)
- ``broker_channel_losses_total{reason}`` <- ``channel_lost(reason)``: a channel the broker
  closed, a consumer it cancelled, a publish left unconfirmed too long
- ``headers_ignored_total{header}`` <- ``header_ignored(header)``: a header of the wrong
  type or size, read as absent
- ``build_info{version}`` (always 1)

``render() -> bytes`` gives the Prometheus text exposition (``CONTENT_TYPE``).

Labels stay low-cardinality whatever the caller passes: command types outside
``contracts.COMMAND_TYPES`` become ``unknown``, outcomes outside ``KNOWN_OUTCOMES`` and status
classes outside ``STATUS_CLASSES`` become ``other``, and free-form names (API calls,
dead-letter reasons) that are not short dotted identifiers become ``other``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from contracts.commands import COMMAND_TYPES

CONTENT_TYPE = CONTENT_TYPE_LATEST
PREFIX = "provisioner"
UNKNOWN = "unknown"
OTHER = "other"

# From 1 ms (a replay answered from the store) to 60 s (immediate retries against a slow API).
DURATION_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                      10.0, 20.0, 30.0, 60.0)  # fmt: skip
KNOWN_OUTCOMES = frozenset({"succeeded", "failed", "rejected", "retry", "error"})
STATUS_CLASSES = frozenset({"2xx", "3xx", "4xx", "5xx", "timeout", "error"})
CHANNEL_LOSS_REASONS = frozenset(
    {"channel_closed", "consumer_cancelled", "confirm_timeout", "partitions_fenced"}
)
# The headers the worker reads; any other name a caller passes is counted as "other".
READ_HEADERS = frozenset({
    "headers", "x-delivery-count", "x-provisioner-attempts", "x-provisioner-replays",
    "x-provisioner-original-routing-key", "x-provisioner-first-failure", "x-death",
})  # fmt: skip
_SAFE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_./-]{0,63}")  # API call labels, dead-letter reasons


def known_command_types() -> frozenset[str]:
    return frozenset(COMMAND_TYPES)


def _build_version() -> str:
    try:
        return package_version("provisioner")
    except PackageNotFoundError:
        return UNKNOWN


def _bounded_name(value: str) -> str:
    return value if _SAFE_NAME.fullmatch(value) else OTHER


class Metrics:
    """The worker's metrics in one registry; safe to call from any thread."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        version: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._clock = clock
        self._command_types = known_command_types()
        self._declare_command_metrics()
        self._declare_retry_metrics()
        self._declare_broker_metrics()
        build_info = Gauge(
            f"{PREFIX}_build_info",
            "Build of this worker (always 1).",
            ["version"],
            registry=self.registry,
        )
        build_info.labels(version or _build_version()).set(1)

    def _declare_command_metrics(self) -> None:
        r, p = self.registry, PREFIX
        self._commands = Counter(
            f"{p}_commands",
            "Commands finished, by type and outcome.",
            ["command_type", "outcome"],
            registry=r,
        )
        self._duration = Histogram(
            f"{p}_command_duration_seconds",
            "Time to process one command, receipt to ack.",
            ["command_type"],
            buckets=DURATION_BUCKETS_S,
            registry=r,
        )
        self._api = Histogram(
            f"{p}_api_request_duration_seconds",
            "Reseller API request duration.",
            ["call", "status_class"],
            buckets=DURATION_BUCKETS_S,
            registry=r,
        )
        self._in_flight = Gauge(
            f"{p}_in_flight_commands", "Commands taken and not yet settled.", registry=r
        )
        self._last = Gauge(
            f"{p}_last_processed_timestamp_seconds",
            "Unix time of the last finished command.",
            registry=r,
        )

    def _declare_retry_metrics(self) -> None:
        """Retries, dead letters and replays: the commands that did not simply run once."""
        r, p = self.registry, PREFIX
        self._immediate = Counter(
            f"{p}_immediate_retries",
            "In-process retries of an API call.",
            ["command_type"],
            registry=r,
        )
        self._delayed = Counter(
            f"{p}_delayed_retries", "Commands sent to a retry queue.", ["command_type"], registry=r
        )
        self._dead = Counter(
            f"{p}_dead_lettered",
            "Messages parked in the dead-letter queue.",
            ["reason"],
            registry=r,
        )
        self._replays = Counter(
            f"{p}_idempotent_replays",
            "Commands answered from the store without an API call.",
            ["command_type"],
            registry=r,
        )

    def _declare_broker_metrics(self) -> None:
        r, p = self.registry, PREFIX
        self._connected = Gauge(
            f"{p}_broker_connected", "1 while connected to the broker.", registry=r
        )
        self._reconnects = Counter(f"{p}_broker_reconnects", "Broker reconnections.", registry=r)
        self._unroutable = Counter(
            f"{p}_events_unroutable", "Events the broker returned as unroutable.", registry=r
        )
        self._blocked = Gauge(
            f"{p}_broker_blocked", "1 while the broker blocks this connection.", registry=r
        )
        self._channel_losses = Counter(
            f"{p}_broker_channel_losses",
            "Channels reopened: closed by the broker, consumer cancelled, confirms overdue.",
            ["reason"],
            registry=r,
        )
        self._headers_ignored = Counter(
            f"{p}_headers_ignored",
            "Message headers ignored for a wrong type or size.",
            ["header"],
            registry=r,
        )

    def command_type_label(self, command_type: str | None) -> str:
        return command_type if command_type in self._command_types else UNKNOWN

    def command_finished(self, command_type: str | None, outcome: str, duration_s: float) -> None:
        label = self.command_type_label(command_type)
        outcome_label = outcome if outcome in KNOWN_OUTCOMES else OTHER
        self._commands.labels(label, outcome_label).inc()
        self._duration.labels(label).observe(max(0.0, duration_s))
        self._last.set(self._clock())

    def api_request(self, call: str, status_class: str, duration_s: float) -> None:
        status = status_class if status_class in STATUS_CLASSES else OTHER
        self._api.labels(_bounded_name(call), status).observe(max(0.0, duration_s))

    def immediate_retry(self, command_type: str | None) -> None:
        self._immediate.labels(self.command_type_label(command_type)).inc()

    def delayed_retry(self, command_type: str | None) -> None:
        self._delayed.labels(self.command_type_label(command_type)).inc()

    def dead_lettered(self, reason: str) -> None:
        self._dead.labels(_bounded_name(reason)).inc()

    def idempotent_replay(self, command_type: str | None) -> None:
        self._replays.labels(self.command_type_label(command_type)).inc()

    def in_flight(self, delta: int) -> None:
        self._in_flight.inc(delta)

    def watch_api_slots(self, in_use: Callable[[], int], slots: int) -> None:
        """API requests in flight against the slots (``PROVISIONER_CONCURRENCY``), read at
        scrape time: always at the limit means the API's concurrency is the bottleneck."""
        r, p = self.registry, PREFIX
        Gauge(f"{p}_api_slots", "API requests allowed in flight at once.", registry=r).set(slots)
        in_flight = Gauge(f"{p}_api_requests_in_flight", "API requests in flight.", registry=r)
        in_flight.set_function(in_use)

    def broker_connected_changed(self, connected: bool) -> None:
        self._connected.set(1 if connected else 0)

    def broker_reconnected(self) -> None:
        self._reconnects.inc()

    def event_unroutable(self) -> None:
        self._unroutable.inc()

    def broker_blocked_changed(self, blocked: bool) -> None:
        self._blocked.set(1 if blocked else 0)

    def channel_lost(self, reason: str) -> None:
        self._channel_losses.labels(reason if reason in CHANNEL_LOSS_REASONS else OTHER).inc()

    def header_ignored(self, header: str) -> None:
        self._headers_ignored.labels(header if header in READ_HEADERS else OTHER).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
