"""Fault injection: latency, random 5xx / 429 / hang / reset, and one-shot rules.

A one-shot rule ``{"call": "add", "task": null, "fault": "hang", "count": 2}`` hits the next
``count`` requests of that call. ``task``, when given, must equal the request's ``task``
parameter, or its ``method`` parameter when it has no ``task`` (so ``{"call": "manage",
"task": "enable"}`` and ``{"call": "manage", "task": "setEmail"}`` both work). One-shot rules
win over the random rates, which are drawn (429, then 5xx, then hang, then reset) from one
RNG seeded by ``seed`` so a run can be replayed.

A rule with a ``rate`` (0..1) instead of a count stays: it hits that share of the matching
requests (``{"call": "credential", "task": "add", "fault": "applied_5xx", "rate": 0.2}``).

``5xx`` and ``429`` refuse the call without applying it; ``hang`` applies it, then answers
only after ``hang_s`` seconds; ``reset`` applies it, then closes the connection unanswered;
``applied_5xx`` applies it, then answers a 5xx (a gateway in front of an API that did the
work: the rule's ``status``, else ``error_status``, e.g. 502); ``applied_garbled`` applies
it, then answers 200 with a body that is not JSON (a truncated or mangled success).
"""

from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass, field, fields
from typing import Any

FAULT_KINDS = ("5xx", "429", "hang", "reset", "applied_5xx", "applied_garbled")
CALL_NAMES = ("add", "delete", "manage", "credential", "subuserManage")
DEFAULT_ERROR_STATUS = 503
DEFAULT_RETRY_AFTER_S = 1.0
DEFAULT_HANG_S = 3.0
RATE_FIELDS = (
    "error_rate",
    "rate_429",
    "hang_rate",
    "reset_rate",
    "applied_error_rate",
    "applied_garbled_rate",
)


class FaultSettingsError(ValueError):
    """A fault setting is out of range; the message names it."""


@dataclass
class FaultRule:
    call: str
    fault: str
    count: int = 1
    task: str | None = None
    status: int | None = None  # for 5xx: the status to answer (default error_status)
    rate: float | None = None  # instead of a count: this share of matching requests, for good

    def matches(self, call: str, operation: str | None) -> bool:
        return self.call == call and (self.task is None or self.task == operation)


@dataclass
class FaultSettings:
    latency_ms: float = 0.0
    error_rate: float = 0.0
    error_status: int = DEFAULT_ERROR_STATUS
    rate_429: float = 0.0
    retry_after_s: float = DEFAULT_RETRY_AFTER_S
    hang_rate: float = 0.0
    reset_rate: float = 0.0
    applied_error_rate: float = 0.0
    applied_garbled_rate: float = 0.0
    hang_s: float = DEFAULT_HANG_S
    seed: int | None = None
    next: list[FaultRule] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Fault:
    kind: str  # one of FAULT_KINDS
    status: int = DEFAULT_ERROR_STATUS


def parse_rule(raw: Any) -> FaultRule:
    if not isinstance(raw, dict):
        raise FaultSettingsError("next: each rule must be an object")
    unknown = set(raw) - {f.name for f in fields(FaultRule)}
    if unknown:
        raise FaultSettingsError(f"next: unknown rule keys {sorted(unknown)}")
    rule = FaultRule(
        call=raw.get("call", ""),
        fault=raw.get("fault", ""),
        count=raw.get("count", 1),
        task=raw.get("task"),
        status=raw.get("status"),
        rate=raw.get("rate"),
    )
    if rule.call not in CALL_NAMES:
        raise FaultSettingsError(f"next: call must be one of {', '.join(CALL_NAMES)}")
    if rule.fault not in FAULT_KINDS:
        raise FaultSettingsError(f"next: fault must be one of {', '.join(FAULT_KINDS)}")
    if not isinstance(rule.count, int) or isinstance(rule.count, bool) or rule.count < 1:
        raise FaultSettingsError("next: count must be a positive integer")
    if rule.task is not None and not isinstance(rule.task, str):
        raise FaultSettingsError("next: task must be a string or null")
    if rule.status is not None and (
        not isinstance(rule.status, int) or not 500 <= rule.status <= 599
    ):
        raise FaultSettingsError("next: status must be a 5xx code")
    if rule.rate is not None:
        rule.rate = number("next: rate", rule.rate, 0.0, 1.0)
    return rule


def number(name: str, value: Any, low: float, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FaultSettingsError(f"{name} must be a number")
    if value < low or (high is not None and value > high):
        raise FaultSettingsError(
            f"{name} must be between {low} and {high if high is not None else 'any'}"
        )
    return float(value)


class Faults:
    """The live fault settings; thread-safe, changed at runtime by the control endpoint."""

    def __init__(self, settings: FaultSettings | None = None) -> None:
        self._lock = threading.Lock()
        self.settings = FaultSettings()
        self._rng = random.Random()
        self.injected: dict[str, int] = {kind: 0 for kind in FAULT_KINDS}
        if settings is not None:
            self.merge({k: v for k, v in settings.to_json().items() if k != "next"})
            self.settings.next = list(settings.next)

    def merge(self, changes: dict[str, Any]) -> None:
        """Apply a partial update; ``next`` rules are appended to the pending ones."""
        unknown = set(changes) - {f.name for f in fields(FaultSettings)}
        if unknown:
            raise FaultSettingsError(f"unknown fault settings {sorted(unknown)}")
        updated = FaultSettings(**{**asdict(self.settings), "next": list(self.settings.next)})
        for name, value in changes.items():
            if name in RATE_FIELDS:
                setattr(updated, name, number(name, value, 0.0, 1.0))
            elif name in ("latency_ms", "retry_after_s", "hang_s"):
                setattr(updated, name, number(name, value, 0.0))
            elif name == "error_status":
                updated.error_status = int(number(name, value, 500, 599))
            elif name == "seed":
                updated.seed = None if value is None else int(number(name, value, 0))
            elif name == "next":
                if not isinstance(value, list):
                    raise FaultSettingsError("next must be a list of rules")
                updated.next.extend(parse_rule(raw) for raw in value)
        with self._lock:
            self.settings = updated
            if "seed" in changes:
                self._rng = random.Random(updated.seed)

    def clear(self) -> None:
        with self._lock:
            self.settings = FaultSettings()
            self._rng = random.Random()
            self.injected = {kind: 0 for kind in FAULT_KINDS}

    @property
    def latency_s(self) -> float:
        return self.settings.latency_ms / 1000.0

    def decide(self, call: str, operation: str | None) -> Fault | None:
        """The fault for this request, if any (consumes a one-shot rule's count)."""
        with self._lock:
            fault = self._take_rule(call, operation) or self._draw()
            if fault is not None:
                self.injected[fault.kind] += 1
            return fault

    def _take_rule(self, call: str, operation: str | None) -> Fault | None:
        settings = self.settings
        for rule in settings.next:
            if rule.matches(call, operation) and rule.rate is not None:
                if self._rng.random() < rule.rate:
                    return Fault(rule.fault, rule.status or settings.error_status)
                continue
            if rule.matches(call, operation):
                rule.count -= 1
                if rule.count == 0:
                    settings.next.remove(rule)
                return Fault(rule.fault, rule.status or settings.error_status)
        return None

    def _draw(self) -> Fault | None:
        s = self.settings
        for kind, rate in (
            ("429", s.rate_429),
            ("5xx", s.error_rate),
            ("hang", s.hang_rate),
            ("reset", s.reset_rate),
            ("applied_5xx", s.applied_error_rate),
            ("applied_garbled", s.applied_garbled_rate),
        ):
            if rate > 0 and self._rng.random() < rate:
                return Fault(kind, s.error_status)
        return None

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {**self.settings.to_json(), "injected": dict(self.injected)}
