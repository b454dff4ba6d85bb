"""W3C trace context over AMQP headers: read from a delivery, written into an event or a copy
of the command, and the link to the earlier attempt's span (``PREVIOUS_TRACEPARENT``); the
current ids for log lines; a failure recorded on a span without its secrets."""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators import textmap
from opentelemetry.trace import Link, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from worker.observability.redact import redact_text
from worker.observability.tracing.setup import STATE

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
# Worker-owned: the span of the attempt that made this copy (a delay-tier or dead-letter copy).
PREVIOUS_TRACEPARENT = "x-provisioner-previous-traceparent"
HEADER_VALUE_MAX_CHARS = 512  # a traceparent is 55; anything much longer is not one

PROPAGATOR = TraceContextTextMapPropagator()


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
        return PROPAGATOR.extract(headers, getter=_GETTER)
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
    if STATE.tracer is None:
        return None
    carrier: dict[str, Any] = {}
    PROPAGATOR.inject(carrier)
    return carrier or None


def mark_attempt(headers: dict[str, Any]) -> None:
    """Into a copy of the command: the current context, and the current span as the earlier
    attempt the next one links to."""
    if STATE.tracer is None:
        return
    carrier: dict[str, Any] = {}
    PROPAGATOR.inject(carrier)
    if TRACEPARENT in carrier:
        headers.update(carrier)
        headers[PREVIOUS_TRACEPARENT] = carrier[TRACEPARENT]


def current_ids() -> dict[str, str]:
    """``trace_id`` and ``span_id`` (hex) of the current span; empty when there is none."""
    if STATE.tracer is None:
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
