"""The soak's settings, the worker's environment for it, its disruption plan and its result.

Timing constants are small on purpose: a 1 s API timeout with 1.5 s hangs makes every
hang an ambiguous answer, and 1 s/2 s/4 s delay tiers let retries finish within the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import soak_checks as checks
from bench.soak_rig import AMQP_URL, SandboxProcess

RETRY_DELAYS_S = (1.0, 2.0, 4.0)
RETRY_DELAYS = "1s,2s,4s"
DELIVERY_LIMIT = 20
API_TIMEOUT_S = 1.0
HANG_S = 1.5  # longer than the worker's API timeout: the call applies, the answer never comes
RETRY_AFTER_S = 1.0
APPLIED_ERROR_STATUS = 502  # a gateway answering for an API that applied the call
SETTLE_TIMEOUT_S = 900.0  # the whole run must finish within this, or the checks FAIL
DISRUPTION_TIMEOUT_S = 300.0
# One call is down for the whole faulty phase, so its commands outlast every retry and the
# dead-letter queue and its replay are exercised at scale (the faults alone rarely do).
OUTAGE_RULE = {"call": "subuserManage", "task": "getsettings", "fault": "5xx", "count": 10**9}
PUBLISH_CHUNK_COMMANDS = 100  # disruptions are due between chunks, spread over the run


@dataclass(frozen=True)
class SoakConfig:
    commands: int = 20_000
    customers: int = 2_000
    kills: int = 3
    broker_restarts: int = 1
    seed: int = 1
    error_rate: float = 0.02
    rate_429: float = 0.01
    hang_rate: float = 0.005
    # Applied, then answered 502 or a garbled 200: ambiguous answers resolved by read-back.
    applied_error_rate: float = 0.005
    applied_garbled_rate: float = 0.005
    concurrency: int = 16  # per worker process
    processes: int = 1  # worker processes under one supervisor (--processes)
    outage: bool = True  # GetAppSettings answers 503 until the faults stop
    # A PostgreSQL store URL (kept out of the printed config: it holds a password); empty: a
    # SQLite file in the soak's directory.
    store_url: str = field(default="", repr=False)
    settle_timeout_s: float = SETTLE_TIMEOUT_S

    def faults(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "error_rate": self.error_rate,
            "rate_429": self.rate_429,
            "retry_after_s": RETRY_AFTER_S,
            "hang_rate": self.hang_rate,
            "hang_s": HANG_S,
            "applied_error_rate": self.applied_error_rate,
            "applied_garbled_rate": self.applied_garbled_rate,
            "error_status": APPLIED_ERROR_STATUS,
            "next": [OUTAGE_RULE] if self.outage else [],
        }


@dataclass
class SoakResult:
    checks: list[checks.Check] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    effects: dict[str, int] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def render(self) -> str:
        width = max(len(k) for k in [*self.counts, *self.effects, "x"])
        lines = ["", "soak counts"] + [f"  {k:<{width}}  {v}" for k, v in self.counts.items()]
        lines += ["", "applied effects per call"]
        lines += [f"  {k:<{width}}  {v}" for k, v in self.effects.items()]
        lines += ["", "checks"] + [f"  {c.line()}" for c in self.checks]
        verdict = "PASS" if self.passed else "FAIL"
        return "\n".join([*lines, "", f"soak {verdict}"])


def worker_env(
    config: SoakConfig, sandbox: SandboxProcess, prefix: str, work: Path
) -> dict[str, str]:
    return {
        "PROVISIONER_AMQP_URL": AMQP_URL,
        "PROVISIONER_API_URL": sandbox.url,
        "PROVISIONER_API_USER": sandbox.api_user,
        "PROVISIONER_API_KEY": sandbox.api_key,
        "PROVISIONER_API_TIMEOUT": str(API_TIMEOUT_S),
        "PROVISIONER_STORE_URL": config.store_url or f"sqlite:///{work / 'store.db'}",
        "PROVISIONER_PREFIX": prefix,
        "PROVISIONER_RETRY_DELAYS": RETRY_DELAYS,
        "PROVISIONER_DELIVERY_LIMIT": str(DELIVERY_LIMIT),
        "PROVISIONER_CONCURRENCY": str(config.concurrency),
        "PROVISIONER_PROCESSES": str(config.processes),
        "PROVISIONER_IMMEDIATE_RETRY_BUDGET": "3",
        "PROVISIONER_WORKER_HEARTBEAT": "0.5",
        "PROVISIONER_WORKER_DEAD_AFTER": "2",
        "PROVISIONER_DRAIN_TIMEOUT": "10",
        "PROVISIONER_RECONNECT_MAX": "2",
        "PROVISIONER_LOG_LEVEL": "WARNING",
    }


def disruption_plan(config: SoakConfig) -> list[tuple[float, str]]:
    """(fraction of keys answered, action): kills spread over the run, restarts between."""
    plan = [((i + 1) / (config.kills + 1), "kill") for i in range(config.kills)]
    restarts = config.broker_restarts
    plan += [((i + 0.5) / (restarts + 0.5) * 0.8, "broker restart") for i in range(restarts)]
    return sorted(plan)
