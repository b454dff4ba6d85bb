"""Settings from the environment: ``*_FILE`` secrets, CLI overrides, each value checked, and
one clear ``ConfigError`` naming the variable for a bad one or a bad combination."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from worker.broker.addresses import check_urls
from worker.config.settings import (
    API_NAMINGS,
    CONSUMER_TIMEOUT_S,
    FILE_ALLOWED,
    MAX_BODY_BYTES_LIMIT,
    MAX_PARTITIONS,
    MAX_PREDECESSOR_WAIT_S,
    MAX_PROCESSES,
    MAX_STORE_POOL_SIZE,
    MIN_BODY_BYTES,
    SECRET_FIELDS,
    ConfigError,
    Settings,
    env_name,
    worst_case_execution_s,
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


def _one_of(values: tuple[str, ...], message: str) -> Callable[[str], str]:
    def check(raw: str) -> str:
        if raw not in values:
            raise ValueError(message)
        return raw

    return check


def _http_url(part: str) -> Callable[[str], str]:
    """An http(s) URL whose ``part`` (``hostname`` or ``netloc``) is not empty."""

    def check(raw: str) -> str:
        if urlsplit(raw).scheme not in ("http", "https") or not getattr(urlsplit(raw), part):
            raise ValueError("must be an http:// or https:// URL")
        return raw

    return check


def _store_url(raw: str) -> str:
    if not raw.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise ValueError("must be sqlite:///path.db or postgresql://...")
    return raw


# Settings whose text is checked by a rule of its own; the others by their default's type.
TEXT_RULES: dict[str, Callable[[str], Any]] = {
    "retry_delays_s": _parse_delays,
    "api_naming": _one_of(API_NAMINGS, f"must be one of {', '.join(API_NAMINGS)}"),
    "log_format": _one_of(("json", "text"), "must be json or text"),
    "amqp_url": lambda raw: ",".join(check_urls(raw)),  # one URL, or the nodes of a cluster
    "management_url": _http_url("hostname"),
    "api_url": _http_url("netloc"),
    "store_url": _store_url,
}
POSITIVE_INTS = frozenset({"concurrency", "threads_per_slot", "processes", "store_pool_size"})
MAX_INTS = {
    "processes": MAX_PROCESSES,
    "store_pool_size": MAX_STORE_POOL_SIZE,
    "partitions": MAX_PARTITIONS,
}
# The waiting delivery is unacked: keep it far from the broker's consumer_timeout.
MAX_SECONDS = {"predecessor_wait_s": MAX_PREDECESSOR_WAIT_S}


def _convert(name: str, raw: str) -> Any:
    rule = TEXT_RULES.get(name)
    if rule is not None:
        return rule(raw)
    default = getattr(Settings, name, None)
    if isinstance(default, bool):
        return raw.lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        return _whole_number(name, raw)
    if isinstance(default, float):
        value = parse_duration_s(raw) if name.endswith("_s") else float(raw)
        if value <= 0:
            raise ValueError("must be positive")
        if name in MAX_SECONDS and value > MAX_SECONDS[name]:
            raise ValueError(f"at most {MAX_SECONDS[name]:g} s")
        return value
    return raw


def _whole_number(name: str, raw: str) -> int:
    value = int(raw)
    if value < 0 or (name in POSITIVE_INTS and value < 1):
        raise ValueError("must be a positive whole number")
    if name == "max_body_bytes" and not MIN_BODY_BYTES <= value <= MAX_BODY_BYTES_LIMIT:
        raise ValueError(f"must be from {MIN_BODY_BYTES} to {MAX_BODY_BYTES_LIMIT} bytes")
    if name in MAX_INTS and value > MAX_INTS[name]:
        raise ValueError(f"at most {MAX_INTS[name]}")
    return value


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


# What one execution's worst case is made of (``worst_case_execution_s``).
WORST_CASE_SETTINGS = (
    "threads_per_slot",
    "api_connect_timeout_s",
    "api_timeout_s",
    "immediate_retry_budget_s",
    "resolve_budget_s",
)


def _consistent(settings: Settings) -> Settings:
    """Settings that are each valid but not together."""
    if settings.processes > 1 and settings.store_url.endswith(":memory:"):
        # Every process would have its own in-memory store: no idempotency between them.
        raise ConfigError(
            env_name("processes"), "several processes need a shared store, not sqlite :memory:"
        )
    worst = worst_case_execution_s(settings)
    names = ", ".join(env_name(n) for n in WORST_CASE_SETTINGS)
    if settings.lease_ttl_s <= worst:
        raise ConfigError(
            env_name("lease_ttl_s"),
            f"{settings.lease_ttl_s:g} s is not longer than the worst case of one execution "
            f"({worst:g} s from {names}): raise it or lower those",
        )
    if settings.predecessor_wait_s + worst >= CONSUMER_TIMEOUT_S:
        # The delivery stays unacked through both: past the timeout the broker closes the
        # channel and the command comes back to run again.
        raise ConfigError(
            env_name("predecessor_wait_s"),
            f"{settings.predecessor_wait_s:g} s plus one execution's worst case ({worst:g} s "
            f"from {names}) must stay under RabbitMQ's consumer_timeout "
            f"({CONSUMER_TIMEOUT_S:g} s): lower them",
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
