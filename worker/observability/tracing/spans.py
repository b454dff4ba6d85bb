"""The spans the worker makes itself: one delivery's CONSUMER span ``process <queue>`` (started on
the pool thread around the command, resumed on the connection's thread to publish its outcome),
and the PRODUCER span of an operator tool's publish."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from worker.observability.redact import redact_text
from worker.observability.tracing.propagation import (
    HEADER_VALUE_MAX_CHARS,
    PROPAGATOR,
    TRACEPARENT,
    extract,
    previous_link,
    record_failure,
)
from worker.observability.tracing.setup import STATE

MESSAGING_SYSTEM = "rabbitmq"

T = TypeVar("T")
_NOTHING = contextlib.nullcontext()


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
    tracer = STATE.tracer
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
    tracer = STATE.tracer
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
        PROPAGATOR.inject(headers)
        yield
