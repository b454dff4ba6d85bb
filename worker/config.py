"""Configuration: named defaults, environment variables, ``*_FILE`` secrets, one clear error.

Every setting is read from ``PROVISIONER_<NAME>`` (and ``SENTRY_DSN``); secrets may instead
come from ``PROVISIONER_<NAME>_FILE`` (a mounted Kubernetes Secret). Every setting also has
a CLI flag (``--<name>``) that wins over the environment. A bad value raises ``ConfigError``
naming the variable, which the CLI prints as one line before exiting with code 2.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from contracts import MAX_BODY_BYTES
from worker.broker.addresses import check_urls
from worker.store import BUSY_TIMEOUT_S as STORE_BUSY_TIMEOUT_S
from worker.store import POOL_SIZE as STORE_POOL_SIZE
from worker.store import POOL_WAIT_S as STORE_POOL_WAIT_S

# Tunables, each overridable by PROVISIONER_<NAME without the unit suffix>.
AMQP_URL = "amqp://guest:guest@localhost:5672/%2F"
API_URL = "https://api.sendgrid.com/apiv2/"
API_NAMINGS = ("apiv2", "distributor")
API_TIMEOUT_S = 30.0
API_CONNECT_TIMEOUT_S = 5.0
STORE_URL = "sqlite:///provisioner.db"
MAX_STORE_POOL_SIZE = 64
# The heartbeat and lease renewals have a store of their own, so that a busy pool never
# delays them past WORKER_DEAD_AFTER_S.
LIVENESS_STORE_CONNECTIONS = 1
CONCURRENCY = 16  # API requests in flight at once, per process
# Pool threads per API slot: a command also claims its key and records its outcome, and
# those store round trips must not keep a slot idle.
THREADS_PER_SLOT = 2
PROCESSES = 1
MAX_PROCESSES = 64
PREFETCH_PER_WORKER = 2
PREFIX = "provisioning"
RETRY_DELAYS_S = (30.0, 120.0, 600.0, 3600.0)
HTTP_PORT = 9191
DELIVERY_LIMIT = 20
IMMEDIATE_RETRIES = 3
IMMEDIATE_RETRY_BUDGET_S = 5.0
RESOLVE_BUDGET_S = 60.0  # how long an unresolved ambiguous call keeps retrying in place
# A key's and its customer's lease: renewed with every heartbeat while the call runs, and
# still longer than the worst case of one execution (``worst_case_execution_s``), so a
# worker whose renewals stall is not overtaken by one slow call.
LEASE_TTL_S = 600.0
WORKER_HEARTBEAT_S = 5.0
WORKER_DEAD_AFTER_S = 20.0
DRAIN_TIMEOUT_S = 30.0
RETENTION_DAYS = 30.0
RECONNECT_MAX_S = 30.0
STARTUP_CONNECT_ATTEMPTS = 5
LOG_FORMAT = "json"
# Partition queues behind the intake (docs/ordering.md); the same in every replica. 0 keeps
# today's single consumed queue, with per-customer order only inside one process.
PARTITIONS = 16
MAX_PARTITIONS = 256
# MAX_BODY_BYTES (from contracts, 1 MiB): larger commands are rejected unread.
MIN_BODY_BYTES = 1024  # below this a real CreateCustomer would not fit
# Well under RabbitMQ's max_message_size (16 MiB on 4.x; 128 MiB on 3.10): the rejection and
# the dead-letter copy of the largest accepted body must still be publishable.
MAX_BODY_BYTES_LIMIT = 16 * 1024 * 1024 - 64 * 1024
# The longest a publish waits for the broker's confirm (also while the broker blocks the
# connection): past it the connection is dropped and reopened, the commands come back.
CONFIRM_TIMEOUT_S = 60.0

SECRET_FIELDS = frozenset(
    {"amqp_url", "api_user", "api_key", "sentry_dsn", "store_url", "management_url"}
)


class ConfigError(ValueError):
    """A setting is missing or malformed. ``variable`` names the environment variable."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable


@dataclass(frozen=True)
class Settings:
    amqp_url: str = AMQP_URL
    # Where `topology --check` asks for quorum queue members; empty: port 15672 of the
    # first broker node, with the broker's credentials.
    management_url: str = field(default="", repr=False)
    # Members of each new quorum queue; 0 leaves it to the broker (every running node up to
    # its quorum_cluster_size). Takes effect only for queues declared after it is set.
    quorum_group_size: int = 0
    api_url: str = API_URL
    api_user: str = ""
    api_key: str = field(default="", repr=False)
    api_naming: str = "apiv2"
    api_timeout_s: float = API_TIMEOUT_S
    api_connect_timeout_s: float = API_CONNECT_TIMEOUT_S
    store_url: str = STORE_URL
    store_pool_size: int = STORE_POOL_SIZE
    store_pool_wait_s: float = STORE_POOL_WAIT_S
    store_busy_timeout_s: float = STORE_BUSY_TIMEOUT_S
    concurrency: int = CONCURRENCY
    threads_per_slot: int = THREADS_PER_SLOT
    processes: int = PROCESSES
    prefetch_per_worker: int = PREFETCH_PER_WORKER
    prefix: str = PREFIX
    retry_delays_s: tuple[float, ...] = RETRY_DELAYS_S
    http_port: int = HTTP_PORT
    sentry_dsn: str = field(default="", repr=False)
    delivery_limit: int = DELIVERY_LIMIT
    immediate_retries: int = IMMEDIATE_RETRIES
    immediate_retry_budget_s: float = IMMEDIATE_RETRY_BUDGET_S
    resolve_budget_s: float = RESOLVE_BUDGET_S
    lease_ttl_s: float = LEASE_TTL_S
    worker_heartbeat_s: float = WORKER_HEARTBEAT_S
    worker_dead_after_s: float = WORKER_DEAD_AFTER_S
    drain_timeout_s: float = DRAIN_TIMEOUT_S
    retention_days: float = RETENTION_DAYS
    reconnect_max_s: float = RECONNECT_MAX_S
    startup_connect_attempts: int = STARTUP_CONNECT_ATTEMPTS
    log_format: str = LOG_FORMAT
    max_body_bytes: int = MAX_BODY_BYTES
    confirm_timeout_s: float = CONFIRM_TIMEOUT_S
    partitions: int = PARTITIONS
    log_level: str = "INFO"
    worker_id: str = field(default_factory=lambda: f"worker-{uuid.uuid4().hex[:12]}")

    def __repr__(self) -> str:  # secrets never reach a log line through repr
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in SECRET_FIELDS:
            if shown[name]:
                shown[name] = "***"
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    __str__ = __repr__

    @property
    def pool_threads(self) -> int:
        return max(1, self.concurrency * self.threads_per_slot)

    @property
    def store_pool_connections(self) -> int:
        """The pool's size: never more than its users (the pool threads and the purger)
        could hold at once."""
        return min(self.store_pool_size, self.pool_threads + 1)

    @property
    def store_connections(self) -> int:
        """PostgreSQL connections of one process: its pool and the heartbeat's own."""
        return self.store_pool_connections + LIVENESS_STORE_CONNECTIONS

    @property
    def prefetch(self) -> int:
        return max(1, self.pool_threads * self.prefetch_per_worker)


def env_name(field_name: str) -> str:
    """``api_timeout_s`` -> ``PROVISIONER_API_TIMEOUT``; ``sentry_dsn`` -> ``SENTRY_DSN``."""
    if field_name == "sentry_dsn":
        return "SENTRY_DSN"
    base = re.sub(r"_(s|days)$", "", field_name) if field_name != "retention_days" else field_name
    return "PROVISIONER_" + base.upper()


def flag_name(field_name: str) -> str:
    return "--" + env_name(field_name).removeprefix("PROVISIONER_").lower().replace("_", "-")


FILE_ALLOWED = frozenset(
    {"amqp_url", "api_user", "api_key", "sentry_dsn", "store_url", "management_url"}
)
KNOWN_ENV = frozenset(env_name(f.name) for f in fields(Settings)) | frozenset(
    env_name(n) + "_FILE" for n in FILE_ALLOWED
)


def parse_duration_s(text: str) -> float:
    """``30s``, ``2m``, ``1h``, ``500ms`` or a bare number of seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", text)
    if not m:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 2m, 1h)")
    value = float(m.group(1))
    scale = {"ms": 0.001, "s": 1.0, None: 1.0, "m": 60.0, "h": 3600.0}[m.group(2)]
    return value * scale


def _parse_delays(text: str) -> tuple[float, ...]:
    delays = tuple(parse_duration_s(part) for part in text.split(",") if part.strip())
    if not delays:
        raise ValueError("at least one delay is needed")
    if any(d <= 0 for d in delays):
        raise ValueError("delays must be positive")
    return delays


def _convert(name: str, raw: str) -> Any:
    default = getattr(Settings, name, None)
    if name == "retry_delays_s":
        return _parse_delays(raw)
    if name == "api_naming":
        if raw not in API_NAMINGS:
            raise ValueError(f"must be one of {', '.join(API_NAMINGS)}")
        return raw
    if name == "log_format":
        if raw not in ("json", "text"):
            raise ValueError("must be json or text")
        return raw
    if name == "amqp_url":  # one URL, or the comma-separated nodes of one cluster
        return ",".join(check_urls(raw))
    if name == "management_url":
        if urlsplit(raw).scheme not in ("http", "https") or not urlsplit(raw).hostname:
            raise ValueError("must be an http:// or https:// URL")
        return raw
    if name == "api_url":
        if urlsplit(raw).scheme not in ("http", "https") or not urlsplit(raw).netloc:
            raise ValueError("must be an http:// or https:// URL")
        return raw
    if name == "store_url":
        if not raw.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("must be sqlite:///path.db or postgresql://...")
        return raw
    if isinstance(default, bool):
        return raw.lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        value = int(raw)
        if value < 0 or (name in POSITIVE_INTS and value < 1):
            raise ValueError("must be a positive whole number")
        if name == "max_body_bytes" and not MIN_BODY_BYTES <= value <= MAX_BODY_BYTES_LIMIT:
            raise ValueError(f"must be from {MIN_BODY_BYTES} to {MAX_BODY_BYTES_LIMIT} bytes")
        if name in MAX_INTS and value > MAX_INTS[name]:
            raise ValueError(f"at most {MAX_INTS[name]}")
        return value
    if isinstance(default, float):
        value_f = parse_duration_s(raw) if name.endswith("_s") else float(raw)
        if value_f <= 0:
            raise ValueError("must be positive")
        return value_f
    return raw


POSITIVE_INTS = frozenset({"concurrency", "threads_per_slot", "processes", "store_pool_size"})
MAX_INTS = {
    "processes": MAX_PROCESSES,
    "store_pool_size": MAX_STORE_POOL_SIZE,
    "partitions": MAX_PARTITIONS,
}


def _read_file(variable: str, path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(variable, f"cannot read the file ({exc.strerror})") from None


def load_settings(
    environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Build ``Settings`` from the environment, then CLI ``overrides`` (field name -> raw text)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in fields(Settings):
        var = env_name(f.name)
        raw: str | None = env.get(var)
        if f.name in FILE_ALLOWED and env.get(var + "_FILE"):
            if raw:
                raise ConfigError(var, f"set either {var} or {var}_FILE, not both")
            raw = _read_file(var + "_FILE", env[var + "_FILE"])
        if overrides and overrides.get(f.name) is not None:
            raw = str(overrides[f.name])
        if raw is None or raw == "":
            continue
        try:
            values[f.name] = _convert(f.name, raw)
        except ValueError as exc:
            shown = "***" if f.name in SECRET_FIELDS else repr(raw)
            raise ConfigError(var, f"{exc} (got {shown})") from None
    return _consistent(Settings(**values))


def worst_case_request_s(settings: Settings) -> float:
    """One API request at worst: the wait for a slot (one other request holds it, with
    ``threads_per_slot`` threads per slot) and the request itself, to both timeouts."""
    one = settings.api_connect_timeout_s + settings.api_timeout_s
    return one * 2


def worst_case_execution_s(settings: Settings) -> float:
    """One execution at worst: the immediate retries' budget and the resolve budget, each
    overrun by the attempt that started just before it ended (a read-back and the call)."""
    attempt = 2 * worst_case_request_s(settings)
    return settings.immediate_retry_budget_s + settings.resolve_budget_s + 2 * attempt


def drain_bound_s(settings: Settings) -> float:
    """How long a stopping worker waits for its calls in flight: the drain timeout, and at
    least one execution's worst case, because a call handed back while it runs would be
    taken by another worker at once."""
    return max(settings.drain_timeout_s, worst_case_execution_s(settings))


def _consistent(settings: Settings) -> Settings:
    """Settings that are each valid but not together."""
    if settings.processes > 1 and settings.store_url.endswith(":memory:"):
        # Every process would have its own in-memory store: no idempotency between them.
        raise ConfigError(
            env_name("processes"), "several processes need a shared store, not sqlite :memory:"
        )
    worst = worst_case_execution_s(settings)
    if settings.lease_ttl_s <= worst:
        names = ", ".join(
            env_name(n)
            for n in (
                "api_connect_timeout_s",
                "api_timeout_s",
                "immediate_retry_budget_s",
                "resolve_budget_s",
            )
        )
        raise ConfigError(
            env_name("lease_ttl_s"),
            f"{settings.lease_ttl_s:g} s is not longer than the worst case of one execution "
            f"({worst:g} s from {names}): raise it or lower those",
        )
    if settings.worker_dead_after_s <= 2 * settings.worker_heartbeat_s:
        raise ConfigError(
            env_name("worker_dead_after_s"),
            f"must exceed twice {env_name('worker_heartbeat_s')} "
            f"({settings.worker_heartbeat_s:g} s) so one late heartbeat is not a death",
        )
    if settings.store_pool_wait_s >= settings.lease_ttl_s:
        # A command waiting that long for the store would outlive its own lease.
        raise ConfigError(
            env_name("store_pool_wait_s"),
            f"must be shorter than {env_name('lease_ttl_s')} ({settings.lease_ttl_s:g} s)",
        )
    return settings
