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

The set-up lives in ``setup.py``, the propagation in ``propagation.py``, the spans in
``spans.py``; callers use this package's names (``from worker.observability import tracing``).
"""

from worker.observability.tracing.propagation import (
    HEADER_VALUE_MAX_CHARS,
    PREVIOUS_TRACEPARENT,
    TRACEPARENT,
    TRACESTATE,
    context_headers,
    current_ids,
    extract,
    mark_attempt,
    previous_link,
    record_failure,
)
from worker.observability.tracing.setup import (
    ENDPOINT_VARIABLES,
    SERVICE_NAME,
    TRACER_NAME,
    configure_from_env,
    enabled,
    install,
    session,
    shutdown,
    tracer,
)
from worker.observability.tracing.spans import (
    MESSAGING_SYSTEM,
    UNTRACED,
    CommandTrace,
    consumer_attributes,
    delivered,
    producing,
)

__all__ = [
    "ENDPOINT_VARIABLES",
    "HEADER_VALUE_MAX_CHARS",
    "MESSAGING_SYSTEM",
    "PREVIOUS_TRACEPARENT",
    "SERVICE_NAME",
    "TRACEPARENT",
    "TRACER_NAME",
    "TRACESTATE",
    "UNTRACED",
    "CommandTrace",
    "configure_from_env",
    "consumer_attributes",
    "context_headers",
    "current_ids",
    "delivered",
    "enabled",
    "extract",
    "install",
    "mark_attempt",
    "previous_link",
    "producing",
    "record_failure",
    "session",
    "shutdown",
    "tracer",
]
