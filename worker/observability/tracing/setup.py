"""Tracing on or off: the SDK started as the ``OTEL_*`` variables say, for the worker or one CLI
command, or a provider installed as it is (tests); ``STATE`` holds the tracer every hook reads."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import trace

from worker import __version__

log = logging.getLogger("worker.observability.tracing")

TRACER_NAME = "provisioner"
SERVICE_NAME = "provisioner"  # OTEL_SERVICE_NAME overrides it
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


class _State:
    tracer: trace.Tracer | None = None
    provider: Any = None
    owned = False  # configured here, so shut down here


STATE = _State()


def enabled() -> bool:
    return STATE.tracer is not None


def tracer() -> trace.Tracer | None:
    return STATE.tracer


def install(provider: Any, *, owned: bool = False) -> None:
    """Trace through ``provider`` (an SDK ``TracerProvider``) from now on."""
    STATE.provider, STATE.owned = provider, owned
    STATE.tracer = provider.get_tracer(TRACER_NAME, __version__)


def shutdown() -> None:
    """Flush and stop what ``configure_from_env`` started; tracing is off afterwards."""
    provider, owned = STATE.provider, STATE.owned
    STATE.tracer, STATE.provider, STATE.owned = None, None, False
    if owned and provider is not None:
        provider.shutdown()


def configure_from_env(service_name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Start the SDK as the ``OTEL_*`` variables say; False (tracing off) when they say nothing."""
    env = os.environ if environ is None else environ
    if enabled() or env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return enabled()
    names = _exporter_names(env)
    if not names:
        return False
    try:
        from worker.observability.tracing_sdk import provider_for
    except ImportError:
        log.warning("OTEL_* is set but the SDK is missing: pip install 'provisioner[otel]'")
        return False
    provider = provider_for(names, env.get("OTEL_SERVICE_NAME") or service_name)
    if provider is None:
        return False
    install(provider, owned=True)
    return True


def _exporter_names(env: Mapping[str, str]) -> list[str]:
    default = "otlp" if any(env.get(v) for v in ENDPOINT_VARIABLES) else ""
    names = env.get("OTEL_TRACES_EXPORTER", default).split(",")
    return [n.strip().lower() for n in names if n.strip() and n.strip().lower() != "none"]


@contextlib.contextmanager
def session(service_name: str) -> Iterator[None]:
    """Tracing for one CLI command, flushed when it ends (unless someone else set it up)."""
    started = not enabled() and configure_from_env(service_name)
    try:
        yield
    finally:
        if started:
            shutdown()
