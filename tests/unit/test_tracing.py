"""Tracing set-up and propagation without a broker: off by default, on by OTEL_*, never fooled
by a hostile header, and the ids in log lines and Sentry events."""

from __future__ import annotations

import io
import json
import logging
import threading
from types import SimpleNamespace

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import format_span_id, format_trace_id

from sandbox.rigs import free_port
from worker.observability import sentry, tracing
from worker.observability.logs import configure_logging
from worker.observability.traced import url_without_credentials

EXPORTER_THREAD_PREFIX = "OtelBatch"  # the SDK's BatchSpanProcessor thread
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def exporter_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(EXPORTER_THREAD_PREFIX)]


def test_with_no_sdk_configured_nothing_starts_and_hooks_do_nothing() -> None:
    # Given an environment without any OTEL_* variable
    # When the worker configures tracing
    assert tracing.configure_from_env("provisioner", {}) is False
    # Then no exporter thread runs, and every hook is a no-op
    assert exporter_threads() == []
    assert tracing.delivered("q", None, None) is tracing.UNTRACED
    task = lambda: 1  # noqa: E731
    assert tracing.UNTRACED.wrap(task, None) is task
    assert tracing.context_headers() is None
    headers = {"traceparent": TRACEPARENT}
    tracing.mark_attempt(headers)
    assert headers == {"traceparent": TRACEPARENT}
    assert tracing.current_ids() == {}


def test_an_otlp_endpoint_starts_one_exporter_thread_until_shutdown() -> None:
    # Given an OTLP endpoint on loopback (nothing listens: no span is sent anyway)
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
    # When tracing is configured from it
    try:
        assert tracing.configure_from_env("provisioner", env) is True
        # Then the batch exporter thread runs
        assert len(exporter_threads()) == 1
    finally:
        tracing.shutdown()
    # And it is gone after shutdown
    assert exporter_threads() == []
    assert not tracing.enabled()


def test_sdk_disabled_or_exporter_none_keeps_tracing_off() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    for env in (
        {"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint},
        {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint},
    ):
        assert tracing.configure_from_env("provisioner", env) is False
    assert exporter_threads() == []


@pytest.mark.parametrize(
    "value",
    [
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # bytes: still understood
        "garbage",
        "00-00000000000000000000000000000000-0000000000000000-01",  # all-zero ids: invalid
        12345,
        {"nested": "table"},
        "00-" + "a" * 5000,
    ],
)
def test_a_hostile_or_odd_traceparent_never_raises(
    spans: InMemorySpanExporter, value: object
) -> None:
    # Given a traceparent header of any shape
    headers = {"traceparent": value, tracing.PREVIOUS_TRACEPARENT: value}
    # When the context and the link are read
    context = tracing.extract(headers)
    links = tracing.previous_link(headers)
    # Then only a well-formed one is taken, and nothing raised
    taken = bool(context) and isinstance(value, bytes)
    assert bool(links) == taken
    if not isinstance(value, bytes):
        assert not context


def test_a_url_loses_its_credentials_and_query() -> None:
    url = "https://user:s3cret@api.example.com:8443/apiv2/reseller.add.json?api_key=k#x"
    assert url_without_credentials(url) == "https://api.example.com:8443/apiv2/reseller.add.json"


def test_log_lines_carry_the_trace_and_span_ids(spans: InMemorySpanExporter) -> None:
    # Given JSON logging and a current span
    stream = io.StringIO()
    configure_logging("json", "INFO", stream)
    tracer = tracing.tracer()
    assert tracer is not None
    try:
        with tracer.start_as_current_span("work") as span:
            logging.getLogger("t").info("inside")
        logging.getLogger("t").info("outside")
    finally:
        configure_logging("json", "INFO")
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    # Then the line inside the span names it, the one outside names none
    assert inside["trace_id"] == format_trace_id(span.get_span_context().trace_id)
    assert inside["span_id"] == format_span_id(span.get_span_context().span_id)
    assert "trace_id" not in outside


def test_sentry_events_carry_the_trace_id(spans: InMemorySpanExporter) -> None:
    # Given a current span; When an unexpected error's event is prepared
    tracer = tracing.tracer()
    assert tracer is not None
    with tracer.start_as_current_span("work") as span:
        event = sentry.before_send({"message": "boom"}, {"exc_info": None})
    # Then it is tagged with the trace and the span
    trace_id = format_trace_id(span.get_span_context().trace_id)
    assert event["tags"]["trace_id"] == trace_id
    assert event["contexts"]["otel"]["span_id"] == format_span_id(span.get_span_context().span_id)


def test_a_failing_command_records_a_scrubbed_exception(spans: InMemorySpanExporter) -> None:
    # Given a traced delivery whose task raises with a password in its message
    method = SimpleNamespace(exchange="x", routing_key="CreateCustomer", delivery_tag=1)
    properties = SimpleNamespace(
        headers={"traceparent": TRACEPARENT}, message_id="m-1", correlation_id=None
    )
    envelope = SimpleNamespace(command=None, invalid=None, delayed_attempts=0)
    command_trace = tracing.delivered("q", method, properties)

    def task() -> None:
        raise RuntimeError("db said password=hunter22 is wrong")

    # When it runs; Then the error propagates and the span has it, scrubbed
    with pytest.raises(RuntimeError):
        command_trace.wrap(task, envelope)()
    [span] = spans.get_finished_spans()
    assert span.status.status_code.name == "ERROR"
    assert "hunter22" not in span.to_json()
    assert span.events[0].attributes is not None
    assert span.events[0].attributes["exception.type"] == "RuntimeError"
