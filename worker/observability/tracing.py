"""OpenTelemetry tracing of a command end to end: set-up, W3C propagation over AMQP headers, and
the consumer span. The hooks elsewhere are one line each; the spans they make are listed in
the README ("Tracing").

- ``configure_from_env(service_name)``: an SDK ``TracerProvider`` with one exporter per name in
  ``OTEL_TRACES_EXPORTER`` (``otlp``, the default once an ``OTEL_EXPORTER_OTLP_*ENDPOINT`` is
  set, or ``console``), batched; ``OTEL_SDK_DISABLED=true`` or nothing configured leaves
  tracing off. The SDK is the optional extra ``provisioner[otel]``; the worker itself needs
  only ``opentelemetry-api``. ``session(name)`` does the same for one CLI command and flushes
  at its end; ``install(provider)`` takes a provider as it is (tests).
- Off (the default), every hook returns at once: no span object, no header parsing, no
  exporter thread.
- ``delivered(queue, method, properties)`` -> a ``CommandTrace``: ``wrap(task, envelope)`` runs
  the command on its pool thread inside the CONSUMER span ``process <queue>``, child of the
  command's ``traceparent``/``tracestate`` and linked to the earlier attempt's span
  (``PREVIOUS_TRACEPARENT``); ``resumed()`` makes that span current again on the connection's
  thread while its outcome is published.
- ``context_headers()`` (for an event) and ``mark_attempt(headers)`` (for a delay-tier or a
  dead-letter copy: it also records this attempt's span for the next one to link to).
- ``producing(...)``: a PRODUCER span around one publish by an operator tool, its context
  injected into the message's headers.
- ``current_ids()``: the current trace and span ids as hex, for log lines and Sentry events.
"""

from __future__ import annotations

import contextlib
import logging
import os
import traceback
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators import textmap
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from worker import __version__
from worker.observability.redact import redact_text

log = logging.getLogger(__name__)

TRACER_NAME = "provisioner"
SERVICE_NAME = "provisioner"  # OTEL_SERVICE_NAME overrides it
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
# Worker-owned: the span of the attempt that made this copy (a delay-tier or dead-letter copy).
PREVIOUS_TRACEPARENT = "x-provisioner-previous-traceparent"
HEADER_VALUE_MAX_CHARS = 512  # a traceparent is 55; anything much longer is not one
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
MESSAGING_SYSTEM = "rabbitmq"

T = TypeVar("T")
_PROPAGATOR = TraceContextTextMapPropagator()
_NOTHING = contextlib.nullcontext()


class _State:
    tracer: trace.Tracer | None = None
    provider: Any = None
    owned = False  # configured here, so shut down here


_state = _State()


def enabled() -> bool:
    return _state.tracer is not None


def tracer() -> trace.Tracer | None:
    return _state.tracer


def install(provider: Any, *, owned: bool = False) -> None:
    """Trace through ``provider`` (an SDK ``TracerProvider``) from now on."""
    _state.provider, _state.owned = provider, owned
    _state.tracer = provider.get_tracer(TRACER_NAME, __version__)


def shutdown() -> None:
    """Flush and stop what ``configure_from_env`` started; tracing is off afterwards."""
    provider, owned = _state.provider, _state.owned
    _state.tracer, _state.provider, _state.owned = None, None, False
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


# -- propagation over AMQP headers -------------------------------------------------------


class _HeaderGetter(textmap.Getter[Mapping[str, Any]]):
    """AMQP header values may be str, bytes or anything a producer sent: only text counts."""

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        value = carrier.get(key)
        if isinstance(value, bytes):
            value = value.decode("ascii", "replace")
        if not isinstance(value, str) or len(value) > HEADER_VALUE_MAX_CHARS:
            return None
        return [value]

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return [str(k) for k in carrier]


_GETTER = _HeaderGetter()


def extract(headers: Mapping[str, Any] | None) -> otel_context.Context:
    """The producer's context from ``traceparent``/``tracestate``; an empty one when absent or
    garbled (a new trace starts)."""
    if not headers:
        return otel_context.Context()
    try:
        return _PROPAGATOR.extract(headers, getter=_GETTER)
    except Exception:  # a hostile header must not cost the command
        return otel_context.Context()


def previous_link(headers: Mapping[str, Any] | None, *fallback: str) -> list[Link]:
    """A link to the span recorded in ``PREVIOUS_TRACEPARENT`` (else the first ``fallback``
    header that holds one): the attempt that made this copy."""
    for name in (PREVIOUS_TRACEPARENT, *fallback):
        value = (headers or {}).get(name)
        context = extract({TRACEPARENT: value}) if value is not None else None
        span_context = trace.get_current_span(context).get_span_context() if context else None
        if span_context is not None and span_context.is_valid:
            return [Link(span_context, {"provisioner.link": "previous_attempt"})]
    return []


def context_headers() -> dict[str, Any] | None:
    """``traceparent``/``tracestate`` of the current span, for a message's headers."""
    if _state.tracer is None:
        return None
    carrier: dict[str, Any] = {}
    _PROPAGATOR.inject(carrier)
    return carrier or None


def mark_attempt(headers: dict[str, Any]) -> None:
    """Into a copy of the command: the current context, and the current span as the earlier
    attempt the next one links to."""
    if _state.tracer is None:
        return
    carrier: dict[str, Any] = {}
    _PROPAGATOR.inject(carrier)
    if TRACEPARENT in carrier:
        headers.update(carrier)
        headers[PREVIOUS_TRACEPARENT] = carrier[TRACEPARENT]


def current_ids() -> dict[str, str]:
    """``trace_id`` and ``span_id`` (hex) of the current span; empty when there is none."""
    if _state.tracer is None:
        return {}
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return {}
    return {
        "trace_id": trace.format_trace_id(span_context.trace_id),
        "span_id": trace.format_span_id(span_context.span_id),
    }


def record_failure(span: Any, exc: BaseException) -> None:
    """The exception on ``span`` with its message and traceback scrubbed of secrets."""
    message = redact_text(str(exc))
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {message}"[:200]))
    span.set_attribute("error.type", type(exc).__name__)
    span.add_event(
        "exception",
        {
            "exception.type": type(exc).__name__,
            "exception.message": message,
            "exception.stacktrace": redact_text("".join(traceback.format_exception(exc))),
        },
    )


# -- the command's consumer span ----------------------------------------------------------


class CommandTrace:
    """One delivery's CONSUMER span: started on the pool thread, resumed to publish."""

    def __init__(self, tracer: trace.Tracer, queue: str, method: Any, properties: Any) -> None:
        self._tracer, self._queue = tracer, queue
        self._method, self._properties = method, properties
        self.span: Any = None

    def wrap(self, task: Callable[[], T], envelope: Any) -> Callable[[], T]:
        def traced() -> T:
            headers = self._properties.headers
            with self._tracer.start_as_current_span(
                f"process {self._queue}",
                context=extract(headers),
                kind=SpanKind.CONSUMER,
                links=previous_link(headers),
                attributes=consumer_attributes(self._queue, self._method, self._properties),
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                self.span = span
                _command_attributes(span, envelope)
                try:
                    decision = task()
                except Exception as exc:
                    record_failure(span, exc)
                    raise
                _decision_attributes(span, decision)
                return decision

        return traced

    def resumed(self) -> contextlib.AbstractContextManager[Any]:
        if self.span is None:
            return _NOTHING
        return trace.use_span(self.span, end_on_exit=False)


class _Untraced:
    """Tracing off: the task as it is, nothing to resume."""

    span = None

    def wrap(self, task: Callable[[], T], envelope: Any) -> Callable[[], T]:
        return task

    def resumed(self) -> contextlib.AbstractContextManager[Any]:
        return _NOTHING


UNTRACED = _Untraced()


def delivered(queue: str, method: Any, properties: Any) -> CommandTrace | _Untraced:
    tracer = _state.tracer
    return UNTRACED if tracer is None else CommandTrace(tracer, queue, method, properties)


def consumer_attributes(queue: str, method: Any, properties: Any) -> dict[str, Any]:
    """Messaging semantic conventions for RabbitMQ, consumer side."""
    exchange = getattr(method, "exchange", "") or ""
    routing_key = getattr(method, "routing_key", "") or ""
    attributes: dict[str, Any] = {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": f"{exchange}:{routing_key}:{queue}",
        "messaging.rabbitmq.destination.routing_key": routing_key,
        "messaging.rabbitmq.message.delivery_tag": int(getattr(method, "delivery_tag", 0) or 0),
    }
    _set_text(attributes, "messaging.message.id", properties.message_id)
    _set_text(attributes, "messaging.message.conversation_id", properties.correlation_id)
    return attributes


def _set_text(attributes: dict[str, Any], name: str, value: Any) -> None:
    if isinstance(value, str) and value:
        attributes[name] = redact_text(value[:HEADER_VALUE_MAX_CHARS])


def _command_attributes(span: Any, envelope: Any) -> None:
    command = envelope.command
    invalid = envelope.invalid
    command_type = type(command).__name__ if command is not None else None
    if invalid is not None:
        command_type = invalid.command_type
    key = (
        command.idempotency_key
        if command is not None
        else getattr(invalid, "idempotency_key", None)
    )
    attributes: dict[str, Any] = {"provisioner.attempt": envelope.delayed_attempts + 1}
    _set_text(attributes, "provisioner.command.type", command_type)
    _set_text(attributes, "provisioner.idempotency_key", key)
    span.set_attributes(attributes)


def _decision_attributes(span: Any, decision: Any) -> None:
    span.set_attribute("provisioner.outcome", decision.outcome)
    if decision.error_code:
        span.set_attribute("provisioner.error_code", decision.error_code)
    if decision.replayed:
        span.set_attribute("provisioner.replayed", True)


# -- operator tools -----------------------------------------------------------------------


@contextlib.contextmanager
def producing(
    exchange: str,
    routing_key: str,
    headers: dict[str, Any],
    *,
    message_id: str | None = None,
    correlation_id: str | None = None,
    links_from: Mapping[str, Any] | None = None,
) -> Iterator[None]:
    """A PRODUCER span ``publish <exchange>`` around one publish, its context written into
    ``headers``; ``links_from``: the headers of the message this one re-sends (a replay)."""
    tracer = _state.tracer
    if tracer is None:
        yield
        return
    attributes: dict[str, Any] = {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.type": "send",
        "messaging.operation.name": "publish",
        "messaging.destination.name": f"{exchange}:{routing_key}",
        "messaging.rabbitmq.destination.routing_key": routing_key,
    }
    _set_text(attributes, "messaging.message.id", message_id)
    _set_text(attributes, "messaging.message.conversation_id", correlation_id)
    links = previous_link(links_from, TRACEPARENT) if links_from is not None else []
    with tracer.start_as_current_span(
        f"publish {exchange}",
        context=otel_context.Context() if links_from is not None else None,
        kind=SpanKind.PRODUCER,
        links=links,
        attributes=attributes,
    ):
        _PROPAGATOR.inject(headers)
        yield
