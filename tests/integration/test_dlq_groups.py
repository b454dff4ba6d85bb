"""`provisioner dlq groups` and `--group` against the real broker: triage one cause at a time."""

from __future__ import annotations

import json
import tracemalloc
from datetime import UTC, datetime, timedelta
from typing import Any

import pika
import pytest

from tests.fixtures.broker import drain, queue_count
from tests.integration.test_dlq import PASSWORD, credential, dlq, ids_in, reset
from worker.broker import headers as h
from worker.broker.topology import Topology

pytestmark = pytest.mark.integration

NOT_FOUND = "reset_password: customer '{customer}' not found (HTTP 404, request {n})"
OUTAGE = "add_credential: server error (HTTP 503) after {n}s"
MANY_MESSAGES = 10_000
PUBLISH_BATCH_MESSAGES = 1_000
# Holding 10,000 dead letters (body, properties, headers) takes well over 20 MB; grouping them
# streams, so only a socket read's worth of deliveries and one record per group are alive.
GROUPING_PEAK_BYTES = 4_000_000


def failure(
    command: dict[str, Any], code: str, error: str, failed_at: datetime, reason: str = "failed"
) -> tuple[str, bytes, Any]:
    """(routing key, body, properties) of a command the worker dead-lettered."""
    routing_key = str(command["type"])
    headers = h.dead_letter_headers(reason, code, error, 3, failed_at, failed_at, routing_key)
    properties = pika.BasicProperties(
        content_type="application/json",
        delivery_mode=pika.DeliveryMode.Persistent,
        headers=headers,
        message_id=f"m-{command['idempotency_key']}",
    )
    return routing_key, json.dumps(command).encode(), properties


def park_all(channel: Any, topology: Topology, failures: list[tuple[str, bytes, Any]]) -> None:
    """Publish in committed batches: one broker round trip per batch, none lost."""
    channel.tx_select()
    for start in range(0, len(failures), PUBLISH_BATCH_MESSAGES):
        for routing_key, body, properties in failures[start : start + PUBLISH_BATCH_MESSAGES]:
            channel.basic_publish(topology.dead_letter_exchange, routing_key, body, properties)
        channel.tx_commit()


def two_causes(channel: Any, topology: Topology) -> tuple[list[str], list[str]]:
    """Three customers not found (different names and numbers), two outages; interleaved."""
    now = datetime.now(UTC)
    not_found = [
        failure(
            reset(f"nf-{i}", f"cust-{i}"),
            "customer_not_found",
            NOT_FOUND.format(customer=f"cust-{i}", n=100 + i),
            now - timedelta(hours=i),
        )
        for i in range(3)
    ]
    outage = [
        failure(
            credential(f"out-{i}"), "retries_exhausted", OUTAGE.format(n=i * 7), now, "exhausted"
        )
        for i in range(2)
    ]
    park_all(channel, topology, [not_found[0], outage[0], not_found[1], outage[1], not_found[2]])
    return [p.message_id for _, _, p in not_found], [p.message_id for _, _, p in outage]


def groups(topology: Topology, amqp_url: str, capsys: pytest.CaptureFixture[str]) -> list[Any]:
    assert dlq(topology, amqp_url, "groups", "--json") == 0
    document = json.loads(capsys.readouterr().out)
    return list(document["groups"])


def test_two_causes_give_two_groups_with_stable_ids(
    topology: Topology, amqp_url: str, broker_channel: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given three "customer not found" dead letters and two outage ones, with passwords
    two_causes(broker_channel, topology)
    # When the operator asks for the groups twice, as JSON and as a table
    first = groups(topology, amqp_url, capsys)
    second = groups(topology, amqp_url, capsys)
    assert dlq(topology, amqp_url, "groups") == 0
    table = capsys.readouterr().out
    # Then there are two groups, largest first, with their counts, times and one example each
    assert [(g["command_type"], g["count"]) for g in first] == [
        ("ResetPassword", 3),
        ("AddCredential", 2),
    ]
    not_found, outage = first
    assert not_found["error"] == "reset_password: customer '<id>' not found (HTTP <n>, request <n>)"
    assert (not_found["reason"], not_found["error_code"]) == ("failed", "customer_not_found")
    assert not_found["oldest_failure"] < not_found["newest_failure"]
    assert not_found["example_key"] in ("nf-0", "nf-1", "nf-2")
    assert (outage["reason"], outage["error_code"]) == ("exhausted", "retries_exhausted")
    # And the ids are the same in every call, and the table shows them without secrets
    assert [g["id"] for g in second] == [g["id"] for g in first]
    assert first[0]["id"] != first[1]["id"]
    assert first[0]["id"] in table and "2 group(s) of 5 message(s)" in table
    assert PASSWORD not in json.dumps(first) + table
    # And nothing was consumed
    assert queue_count(broker_channel, topology.dead_letter_queue) == 5


def test_acting_on_one_group_leaves_the_other_untouched(
    topology: Topology, amqp_url: str, broker_channel: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the two causes, and their group ids
    not_found_ids, outage_ids = two_causes(broker_channel, topology)
    not_found, outage = groups(topology, amqp_url, capsys)
    # When the operator lists one group, dry-runs its replay, then replays it
    assert dlq(topology, amqp_url, "list", "--json", "--group", outage["id"]) == 0
    listed = json.loads(capsys.readouterr().out)["messages"]
    assert dlq(topology, amqp_url, "replay", "--group", not_found["id"], "--dry-run") == 0
    assert "would replay 3 of 5" in capsys.readouterr().out
    assert queue_count(broker_channel, topology.commands_queue) == 0
    assert dlq(topology, amqp_url, "replay", "--group", not_found["id"]) == 0
    # Then the list named exactly that group's messages
    assert [m["message_id"] for m in listed] == outage_ids
    assert {m["group"] for m in listed} == {outage["id"]}
    # And exactly the replayed group went back to the commands, in order
    assert "replayed 3, skipped 2, failed 0" in capsys.readouterr().out
    assert [p.message_id for p, _ in drain(broker_channel, topology.commands_queue)] == (
        not_found_ids
    )
    # And the other group is untouched: same messages, same id, same count
    [remaining] = groups(topology, amqp_url, capsys)
    assert (remaining["id"], remaining["count"]) == (outage["id"], 2)
    # When that group is purged; Then the queue is empty
    assert dlq(topology, amqp_url, "purge", "--group", outage["id"], "--yes") == 0
    assert "removed 2 message(s)" in capsys.readouterr().out
    assert ids_in(broker_channel, topology.dead_letter_queue) == []


def test_ten_thousand_dead_letters_are_grouped_in_bounded_memory(
    topology: Topology, amqp_url: str, broker_channel: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given 10,000 dead letters of five causes
    now = datetime.now(UTC)
    park_all(
        broker_channel,
        topology,
        [
            failure(reset(f"k-{i}", f"c-{i}"), f"code_{i % 5}", f"no {i} for c-{i}", now)
            for i in range(MANY_MESSAGES)
        ],
    )
    # When they are grouped, with memory traced
    tracemalloc.start()
    try:
        assert dlq(topology, amqp_url, "groups", "--json") == 0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    out, err = capsys.readouterr()
    # Then five groups of 2,000, within a peak far below holding the messages
    assert sorted(g["count"] for g in json.loads(out)["groups"]) == [2000] * 5
    assert peak < GROUPING_PEAK_BYTES, f"peak {peak} bytes"
    # And the operator saw progress, and every message is still in the queue
    assert f"reading {MANY_MESSAGES}/{MANY_MESSAGES}" in err
    assert queue_count(broker_channel, topology.dead_letter_queue) == MANY_MESSAGES
