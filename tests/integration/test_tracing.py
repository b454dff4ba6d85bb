"""Tracing end to end on the real broker and sandbox, spans caught by the SDK's in-memory exporter.

The worker runs in this process (a consumer thread) so that its spans reach the exporter; it is
wired as ``worker.app.run_worker`` wires it.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, format_span_id, format_trace_id

from contracts.examples import create_customer_body
from tests.fixtures.broker import queue_count
from tests.fixtures.wait import wait_until
from worker.api import ResellerClient
from worker.app import ScopedExecutor, executor_config
from worker.broker.topology import Topology
from worker.cli import main
from worker.config import Settings
from worker.consumer import Consumer
from worker.observability import traced
from worker.observability.logs import JsonFormatter
from worker.report import OutcomeReporter
from worker.store import open_store

pytestmark = pytest.mark.integration

PASSWORD = "Tr4ce-Secret-pw"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PRODUCER_SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PRODUCER_SPAN_ID}-01"
STOP_TIMEOUT_S = 15.0


class InProcessWorker:
    """The worker's consumer on a thread of the test process, plus a tap on the events."""

    def __init__(self, settings: Settings, channel: Any) -> None:
        self.topology = Topology.from_settings(settings)
        self.topology.declare(channel)
        self.channel = channel
        self.tap = f"{settings.prefix}.events-tap"
        channel.queue_declare(self.tap, durable=True, arguments={"x-queue-type": "quorum"})
        channel.queue_bind(self.tap, self.topology.events_exchange, "#")
        self.store = traced.traced_store(open_store(settings.store_url), settings.store_url)
        self.client = ResellerClient.from_settings(settings)
        config = executor_config(settings, self.store.fingerprint_keys())
        executor = ScopedExecutor(self.client, self.store, config)
        self.consumer = Consumer(settings, executor, self.topology, observer=OutcomeReporter())
        self.thread = threading.Thread(target=self.consumer.run, name="test-consumer")
        self.thread.start()

    def publish(self, command: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
        message_id = f"m-{command['idempotency_key']}"
        properties = pika.BasicProperties(
            delivery_mode=2, message_id=message_id, correlation_id="conv-1", headers=headers
        )
        body = json.dumps(command).encode()
        self.channel.basic_publish(
            self.topology.commands_exchange, str(command["type"]), body, properties
        )
        return message_id

    def next_event(self) -> tuple[Any, dict[str, Any]]:
        def get() -> Any:
            method, properties, body = self.channel.basic_get(self.tap, auto_ack=True)
            return (properties, json.loads(body)) if method is not None else None

        found: tuple[Any, dict[str, Any]] = wait_until(get, 20, "an event")
        return found

    def stop(self) -> None:
        self.consumer.request_stop()
        self.thread.join(STOP_TIMEOUT_S)
        self.client.close()
        self.store.close()


@pytest.fixture
def outcome_lines() -> Iterator[io.StringIO]:
    """The worker's per-command outcome lines, as JSON."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("worker.outcome")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)


@pytest.fixture
def worker(
    spans: InMemorySpanExporter,
    sandbox: Any,
    amqp_url: str,
    prefix: str,
    broker_channel: Any,
    tmp_path: Path,
) -> Iterator[InProcessWorker]:
    settings = Settings(
        amqp_url=amqp_url,
        api_url=sandbox.url,
        api_user=sandbox.api_user,
        api_key=sandbox.api_key,
        store_url=f"sqlite:///{tmp_path / 'store.db'}",
        prefix=prefix,
        retry_delays_s=(0.3,),
        immediate_retries=0,
        concurrency=2,
        drain_timeout_s=5.0,
    )
    rig = InProcessWorker(settings, broker_channel)
    try:
        wait_until(
            lambda: (
                broker_channel.queue_declare(
                    rig.topology.commands_queue, passive=True
                ).method.consumer_count
            ),
            20,
            "worker consuming",
        )
        yield rig
    finally:
        rig.stop()


def consumer_spans(exporter: InMemorySpanExporter, key: str) -> list[ReadableSpan]:
    return [
        s
        for s in exporter.get_finished_spans()
        if s.kind is SpanKind.CONSUMER and s.attributes.get("provisioner.idempotency_key") == key
    ]


def runs(exporter: InMemorySpanExporter, key: str, count: int) -> list[ReadableSpan]:
    """The consumer spans of ``key`` once there are ``count`` of them, else []."""
    found = consumer_spans(exporter, key)
    return found if len(found) >= count else []


def children(exporter: InMemorySpanExporter, parent: ReadableSpan) -> list[ReadableSpan]:
    span_id = parent.context.span_id
    return [s for s in exporter.get_finished_spans() if s.parent and s.parent.span_id == span_id]


def parent_of(traceparent: str) -> tuple[str, str]:
    """(trace id, parent span id) of a W3C traceparent."""
    _version, trace_id, span_id, _flags = traceparent.split("-")
    return trace_id, span_id


def test_a_command_with_a_traceparent_continues_its_trace_to_the_event(
    worker: InProcessWorker, spans: InMemorySpanExporter, sandbox: Any, outcome_lines: io.StringIO
) -> None:
    # Given a CreateCustomer whose producer sent a traceparent and a tracestate
    command = create_customer_body("traced", key="k-traced", password=PASSWORD)
    worker.publish(command, {"traceparent": TRACEPARENT, "tracestate": "vendor=abc"})
    # When the worker has published its event
    properties, event = worker.next_event()
    assert event["type"] == "CustomerCreated"
    [process] = wait_until(lambda: consumer_spans(spans, "k-traced"), 10, "the consumer span")
    # Then the event's traceparent is in the producer's trace, with the worker's span as parent
    assert parent_of(properties.headers["traceparent"]) == (
        TRACE_ID,
        format_span_id(process.context.span_id),
    )
    assert properties.headers["tracestate"] == "vendor=abc"
    # And the consumer span is the producer's child, with the messaging conventions
    assert format_trace_id(process.context.trace_id) == TRACE_ID
    assert process.parent is not None and format_span_id(process.parent.span_id) == (
        PRODUCER_SPAN_ID
    )
    assert process.name == f"process {worker.topology.commands_queue}"
    attributes = dict(process.attributes or {})
    assert attributes["messaging.system"] == "rabbitmq"
    assert attributes["messaging.operation.type"] == "process"
    assert attributes["messaging.destination.name"].endswith(f":{worker.topology.commands_queue}")
    assert attributes["messaging.rabbitmq.destination.routing_key"] == "CreateCustomer"
    assert attributes["messaging.message.id"] == "m-k-traced"
    assert attributes["messaging.message.conversation_id"] == "conv-1"
    assert attributes["provisioner.command.type"] == "CreateCustomer"
    assert attributes["provisioner.outcome"] == "succeeded"
    # And under it: the API call as a CLIENT span, the store operations as internal spans
    below = children(spans, process)
    [call] = [s for s in below if s.kind is SpanKind.CLIENT]
    assert call.attributes is not None
    assert call.attributes["http.request.method"] == "POST"
    assert call.attributes["http.response.status_code"] == 200
    assert call.attributes["provisioner.api.outcome"] == "success"
    assert str(call.attributes["url.full"]).startswith(sandbox.url.rstrip("/"))
    assert {"store claim", "store complete"} <= {s.name for s in below}
    # And no secret is anywhere in the spans
    dumped = "".join(s.to_json() for s in spans.get_finished_spans())
    assert PASSWORD not in dumped and sandbox.api_key not in dumped
    # And the command's outcome line names its trace and span
    line = wait_until(lambda: outcome_lines.getvalue(), 10, "the outcome line")
    outcome = json.loads(line.splitlines()[0])
    assert (outcome["trace_id"], outcome["span_id"]) == (
        TRACE_ID,
        format_span_id(process.context.span_id),
    )


def test_without_a_traceparent_a_new_trace_starts(
    worker: InProcessWorker, spans: InMemorySpanExporter
) -> None:
    # Given a command with no trace headers
    worker.publish(create_customer_body("fresh", key="k-fresh", password=PASSWORD))
    # When it is processed
    properties, _ = worker.next_event()
    [process] = wait_until(lambda: consumer_spans(spans, "k-fresh"), 10, "the consumer span")
    # Then its span is a root, and the event continues that new trace
    assert process.parent is None and not process.links
    assert parent_of(properties.headers["traceparent"]) == (
        format_trace_id(process.context.trace_id),
        format_span_id(process.context.span_id),
    )


def test_a_delayed_retry_links_to_its_first_attempt(
    worker: InProcessWorker, spans: InMemorySpanExporter, sandbox: Any
) -> None:
    # Given an API that rate-limits the first create (transient: a delay tier, not a read-back)
    fault = {"next": [{"call": "add", "fault": "429"}], "retry_after_s": 0}
    sandbox.control_post("/_sandbox/faults", fault)
    # When a traced command goes through a delay tier and then succeeds
    worker.publish(
        create_customer_body("retried", key="k-retry", password=PASSWORD),
        {"traceparent": TRACEPARENT},
    )
    _, event = worker.next_event()
    assert event["type"] == "CustomerCreated" and event["attempts"] == 2
    first, second = wait_until(lambda: runs(spans, "k-retry", 2), 10, "two attempts")
    # Then the first attempt's API call was transient, and the second links to the first
    assert first.attributes is not None and first.attributes["provisioner.outcome"] == "retry"
    [failed_call] = [s for s in children(spans, first) if s.kind is SpanKind.CLIENT]
    assert failed_call.attributes is not None
    assert failed_call.attributes["provisioner.api.outcome"] == "transient"
    assert [link.context.span_id for link in second.links] == [first.context.span_id]
    # And both are in the producer's trace, the retry a child of the first attempt
    assert {format_trace_id(s.context.trace_id) for s in (first, second)} == {TRACE_ID}
    assert second.parent is not None and second.parent.span_id == first.context.span_id


def test_a_dead_letter_replay_links_to_the_failed_attempt(
    worker: InProcessWorker, spans: InMemorySpanExporter, amqp_url: str
) -> None:
    # Given a command that fails permanently (no such customer) and is dead-lettered
    command = {
        "type": "ResetPassword",
        "idempotency_key": "k-replay",
        "customer": "nobody",
        "new_password": PASSWORD,
    }
    worker.publish(command, {"traceparent": TRACEPARENT})
    _, event = worker.next_event()
    assert event["type"] == "CommandFailed"
    [failed] = wait_until(lambda: consumer_spans(spans, "k-replay"), 10, "the failed attempt")
    wait_until(lambda: queue_count(worker.channel, worker.topology.dead_letter_queue), 10, "dlq")
    # When the operator replays it
    argv = ["dlq", "replay", "--amqp-url", amqp_url, "--prefix", worker.topology.prefix]
    assert main(argv) == 0
    worker.next_event()
    _, run = wait_until(lambda: runs(spans, "k-replay", 2), 10, "the replayed run")
    # Then the replay's PRODUCER span links to the failed attempt, in a trace of its own
    [publish] = [s for s in spans.get_finished_spans() if s.kind is SpanKind.PRODUCER]
    assert [link.context.span_id for link in publish.links] == [failed.context.span_id]
    assert publish.parent is None and publish.context.trace_id != failed.context.trace_id
    # And the replayed run is the replay's child, linked to the failed attempt as well
    assert run.parent is not None and run.parent.span_id == publish.context.span_id
    assert [link.context.span_id for link in run.links] == [failed.context.span_id]
    dumped = "".join(s.to_json() for s in spans.get_finished_spans())
    assert PASSWORD not in dumped


def test_publish_starts_a_producer_span_and_sends_its_context(
    spans: InMemorySpanExporter,
    amqp_url: str,
    prefix: str,
    broker_channel: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given the topology and a command file
    topology = Topology(prefix, (30.0,), 5)
    topology.declare(broker_channel)
    path = tmp_path / "command.json"
    path.write_text(json.dumps(create_customer_body("pub", key="k-pub", password=PASSWORD)))
    # When it is published with the CLI
    assert main(["publish", str(path), "--amqp-url", amqp_url, "--prefix", prefix]) == 0
    # Then one PRODUCER span was made, and the command carries its context
    [producer] = spans.get_finished_spans()
    assert producer.kind is SpanKind.PRODUCER
    assert producer.name == f"publish {topology.commands_exchange}"
    assert producer.attributes is not None
    assert producer.attributes["messaging.message.id"] == capsys.readouterr().out.strip()
    method, properties, _ = broker_channel.basic_get(topology.commands_queue, auto_ack=True)
    assert method is not None
    assert parent_of(properties.headers["traceparent"]) == (
        format_trace_id(producer.context.trace_id),
        format_span_id(producer.context.span_id),
    )
