"""Hostile input against a real worker process: headers of every wrong type, oversized
bodies, control characters. None may crash or steer the worker; each command still gets
its one event."""

from __future__ import annotations

import datetime
import decimal
import json
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from contracts import encode_command
from contracts.examples import example_commands
from tests.fixtures.wait import wait_until
from tests.integration.harness import WorkerRig, customer_command

pytestmark = pytest.mark.integration

# Every AMQP field type pika can send (it has no float), as each header the worker reads.
WRONG_VALUES: list[Any] = [
    "abc",
    b"abc",
    "9" * 40,
    -3,
    10**15,
    True,
    decimal.Decimal("2.5"),
    datetime.datetime(2026, 1, 1),
    [1, 2],
    {"nested": 1},
    "",
]
READ_HEADERS = ["x-delivery-count", "x-provisioner-attempts", "x-provisioner-replays"]


def metric(port: str, name: str, **labels: str) -> float:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += float(sample.value)
    return total


def api_calls(rig: WorkerRig) -> int:
    counts: dict[str, Any] = rig.sandbox.control_get("/_sandbox/calls")
    return sum(int(v) for v in counts.get("calls", counts).values())


def test_headers_of_every_wrong_type_are_ignored_counted_and_never_crash(rig: WorkerRig) -> None:
    # Given a running worker
    port = rig.env()["PROVISIONER_HTTP_PORT"]
    proc = rig.start_worker(PROVISIONER_HTTP_PORT=port)
    # When commands arrive with each header the worker reads set to each wrong type
    keys = []
    for header in READ_HEADERS:
        for n, value in enumerate(WRONG_VALUES):
            key = f"h-{header}-{n}"
            keys.append(key)
            rig.publish(customer_command(f"u{len(keys)}", key=key), headers={header: value})
    # Then every command succeeds once, and the worker is still running
    rig.wait_events(len(keys), 60, type="CustomerCreated")
    assert all(len(rig.events_for(key)) == 1 for key in keys)
    assert proc.poll() is None, rig.worker_log(proc)
    # And the ignored headers are counted (x-delivery-count of a first delivery is not read)
    assert metric(
        port, "provisioner_headers_ignored_total", header="x-provisioner-attempts"
    ) == len(WRONG_VALUES)
    assert metric(port, "provisioner_headers_ignored_total", header="x-provisioner-replays") == len(
        WRONG_VALUES
    )
    assert "headers of a wrong type or size ignored" in rig.worker_log(proc)


def test_a_publisher_cannot_claim_redeliveries_the_broker_did_not_make(rig: WorkerRig) -> None:
    # Given a fresh command claiming 19 redeliveries (one short of the queue's limit of 20)
    rig.start_worker()
    rig.publish(customer_command("forged", key="forged-count"), headers={"x-delivery-count": 19})
    # Then it runs normally instead of being parked at the delivery limit
    (event,) = rig.wait_events(1, idempotency_key="forged-count")
    assert event["type"] == "CustomerCreated"


def test_a_too_long_routing_key_header_falls_back_to_the_deliverys_own(rig: WorkerRig) -> None:
    # Given an invalid command whose recorded routing key is longer than AMQP allows
    proc = rig.start_worker()
    bad = customer_command("x" * 70, key="long-rk")
    rig.publish(bad, headers={"x-provisioner-original-routing-key": "k" * 300})
    # Then it is rejected and parked under the routing key it was delivered with
    (event,) = rig.wait_events(1, idempotency_key="long-rk")
    assert event["type"] == "CommandRejected"
    dead_letters = rig.topology.dead_letter_queue
    wait_until(lambda: rig.depth(dead_letters) == 1, 10, "one dead letter")
    ((method, _props, _body),) = list(rig.get_all(dead_letters))
    assert method.routing_key == "CreateCustomer"
    assert proc.poll() is None


def test_a_body_one_byte_over_the_limit_is_rejected_and_kept(rig: WorkerRig) -> None:
    # Given a worker accepting bodies of at most 2048 bytes
    rig.start_worker(PROVISIONER_MAX_BODY_BYTES="2048")
    command = customer_command("bigbody", key="big-body")
    body = json.dumps(command).encode()
    at_limit = body[:-1] + b" " * (2048 - len(body)) + b"}"
    over = body[:-1] + b" " * (2049 - len(body)) + b"}"
    assert (len(at_limit), len(over)) == (2048, 2049)
    # When the same command arrives one byte over the limit, then exactly at it
    rig.publish(over)
    (rejected,) = rig.wait_events(1, type="CommandRejected")
    rig.publish(at_limit)
    rig.wait_events(1, type="CustomerCreated")
    # Then the larger one was rejected unread (no key could be read) and kept whole
    assert rejected["error"]["code"] == "invalid_command"
    assert "2049 bytes; at most 2048" in rejected["error"]["message"]
    wait_until(lambda: rig.depth(rig.topology.dead_letter_queue) == 1, 10, "one dead letter")
    ((_method, _props, kept),) = list(rig.get_all(rig.topology.dead_letter_queue))
    assert kept == over


def test_a_nul_in_the_customer_is_rejected_without_an_api_call(rig: WorkerRig) -> None:
    # Given a running worker and the API's call count
    rig.start_worker()
    before = api_calls(rig)
    command = json.loads(encode_command(example_commands()["EnableCustomer"]))
    command.update(idempotency_key="nul-customer", customer="ali\x00ce")
    # When an EnableCustomer names a customer with a NUL in it
    rig.publish(command)
    # Then it is rejected as invalid, naming the field, and the API is never called
    (event,) = rig.wait_events(1, idempotency_key="nul-customer")
    assert event["type"] == "CommandRejected"
    assert event["error"]["code"] == "invalid_command"
    assert "$.customer: must not contain control characters" in event["error"]["message"]
    assert api_calls(rig) == before


def test_a_rejection_of_40000_bad_items_stays_small(rig: WorkerRig) -> None:
    # Given a ~430 KiB CreateCustomer with 40,000 bad IP addresses (under the body limit)
    rig.start_worker()
    command = customer_command("manyips", key="many-bad-ips", ips=["not-an-ip"] * 40_000)
    rig.publish(command)
    # Then its rejection names the first problems and counts the rest, in a small event
    (event,) = rig.wait_events(1, idempotency_key="many-bad-ips")
    assert event["type"] == "CommandRejected"
    assert event["error"]["message"].endswith("; and 39980 more")
    assert len(json.dumps(event)) < 4096
    # And the dead-letter copy's headers are small too
    wait_until(lambda: rig.depth(rig.topology.dead_letter_queue) == 1, 10, "one dead letter")
    ((_method, props, _body),) = list(rig.get_all(rig.topology.dead_letter_queue))
    assert len(json.dumps(props.headers, default=str)) < 2048
