"""The settings of a worker, their named defaults and the bounds derived from them.

Every tunable below is overridable by ``PROVISIONER_<NAME without the unit suffix>``
(``worker.config.load``); ``Settings`` is what the rest of the worker reads.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field, fields

from contracts import MAX_BODY_BYTES
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
# Pool threads per API slot: a command also claims its key, records its outcome and waits
# for its event's confirm, and under load those round trips take as long as a 50 ms API
# call, so fewer threads leave slots idle (docs/performance.md, "Threads per slot": 8
# against 2, +15-40 % commands/s at 0 and 50 ms).
THREADS_PER_SLOT = 8
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
LEASE_TTL_S = 1500.0
# RabbitMQ's default consumer_timeout: a delivery unacked longer closes its channel. A
# command's delivery stays unacked while it waits for its predecessor and while it runs.
CONSUMER_TIMEOUT_S = 1800.0
WORKER_HEARTBEAT_S = 5.0
WORKER_DEAD_AFTER_S = 20.0
DRAIN_TIMEOUT_S = 30.0
RETENTION_DAYS = 30.0
RECONNECT_MAX_S = 30.0
STARTUP_CONNECT_ATTEMPTS = 5
LOG_FORMAT = "json"
# Partition queues behind the intake (docs/ordering.md). Every process works with the P the
# store records; a new value takes effect, online, once every process is configured with it
# ("Changing P"). 0 keeps today's single consumed queue, with order only inside one process.
PARTITIONS = 16
# A hold older than the longest delay tier plus this is overdue: its holder may never come
# back (docs/ordering.md, "Stuck holds"); reported, never released on that ground alone.
HOLD_OVERDUE_MARGIN_S = 600.0
MAX_PARTITIONS = 256
# A returned delivery waits at most this long for its predecessor, then runs (docs/ordering.md,
# "Returned deliveries out of order"); at most MAX_PREDECESSOR_WAIT_S, far below RabbitMQ's
# 30-minute consumer_timeout, since the delivery stays unacked meanwhile.
PREDECESSOR_WAIT_S = 30.0
MAX_PREDECESSOR_WAIT_S = 600.0
# Members of each new quorum queue: a majority survives one node lost; RabbitMQ places them
# on fewer nodes when the cluster has fewer (one on a single node).
QUORUM_GROUP_SIZE = 3
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
    # its quorum_cluster_size). Takes effect only for queues created after it is set: an
    # existing queue keeps its own (worker.broker.group_size).
    quorum_group_size: int = QUORUM_GROUP_SIZE
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
    hold_overdue_margin_s: float = HOLD_OVERDUE_MARGIN_S
    predecessor_wait_s: float = PREDECESSOR_WAIT_S
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


def worst_case_request_s(settings: Settings) -> float:
    """One API request at worst: the wait for a slot (the other ``threads_per_slot`` - 1
    threads of its share ahead of it) and the request itself, each to both timeouts."""
    one = settings.api_connect_timeout_s + settings.api_timeout_s
    return one * settings.threads_per_slot


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
