"""The broker closing the worker's channel or cancelling its consumer: noticed at once,
reported by /readyz, recovered from by reopening, with nothing lost and nothing run twice."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.fixtures.wait import wait_until
from tests.integration.harness import WorkerRig, customer_command

pytestmark = pytest.mark.integration


def readyz(port: str) -> tuple[int, dict[str, Any]]:
    answer = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
    return answer.status_code, answer.json()


def metric_text(port: str) -> str:
    return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text


def api_calls(rig: WorkerRig, name: str) -> int:
    counts: dict[str, Any] = rig.sandbox.control_get("/_sandbox/calls")
    return int(counts.get("calls", counts).get(name, 0))


def in_flight(port: str) -> float:
    for line in metric_text(port).splitlines():
        if line.startswith("provisioner_in_flight_commands "):
            return float(line.split()[1])
    raise AssertionError("no in_flight_commands gauge")


def recovered(port: str, episodes: int) -> dict[str, Any]:
    """The probe body once the worker is ready again after ``episodes`` outages."""

    def ready_again() -> dict[str, Any] | None:
        code, body = readyz(port)
        return body if code == 200 and body["unready_episodes"] >= episodes else None

    return wait_until(ready_again, 20, "ready again after the outage")


def test_a_channel_closed_by_the_broker_is_reopened_and_the_command_answered(
    rig: WorkerRig,
) -> None:
    # Given a ready worker
    port = rig.env()["PROVISIONER_HTTP_PORT"]
    proc = rig.start_worker(PROVISIONER_HTTP_PORT=port)
    wait_until(lambda: readyz(port)[0] == 200, 10, "ready")
    # When the dead-letter exchange is deleted and an invalid command arrives (its
    # dead-letter publish hits a missing exchange: the broker closes the channel)
    rig.channel.exchange_delete(rig.topology.dead_letter_exchange)
    rig.publish(customer_command("x" * 70, key="closes-channel"))
    # Then /readyz went unready with the broker's reason and is ready again
    body = recovered(port, 1)
    assert "channel closed by the broker" in body["last_unready_reason"]
    assert "NOT_FOUND" in body["last_unready_reason"]
    # And the topology was declared again: the command comes back and is parked this time
    rig.wait_events(1, idempotency_key="closes-channel", type="CommandRejected")
    wait_until(lambda: rig.depth(rig.topology.dead_letter_queue) == 1, 10, "dead letter")
    # And the worker keeps consuming: a later command succeeds, with one API call
    rig.publish(customer_command("after-close", key="after-close"))
    rig.wait_events(1, idempotency_key="after-close", type="CustomerCreated")
    assert proc.poll() is None
    assert 'provisioner_broker_channel_losses_total{reason="channel_closed"} 1.0' in metric_text(
        port
    )
    assert "broker channel lost; reopening" in rig.worker_log(proc)


def test_a_consumer_cancelled_by_deleting_its_queue_consumes_again(rig: WorkerRig) -> None:
    # Given a ready worker that has answered one command
    port = rig.env()["PROVISIONER_HTTP_PORT"]
    proc = rig.start_worker(PROVISIONER_HTTP_PORT=port)
    rig.publish(customer_command("before-cancel", key="before-cancel"))
    rig.wait_events(1, idempotency_key="before-cancel")
    wait_until(rig.owners_of_partitions, 20, "the worker consuming every partition")
    # When the commands queue (its consumer: the sequencer) and a partition queue (this
    # worker's) are deleted under their consumers
    rig.channel.queue_delete(rig.topology.commands_queue)
    rig.channel.queue_delete(rig.topology.partition_queues[0])
    # Then both are declared again and consumed, and the worker is ready again
    body = recovered(port, 1)
    assert "cancelled the consumer" in body["last_unready_reason"]
    wait_until(lambda: rig.consumers() == 1, 20, "the sequencer consuming the new intake")
    assert "sequencer channel lost; reopening" in rig.worker_log(proc)
    # And later commands succeed, each calling the API once
    for n in range(3):
        rig.publish(customer_command(f"after-cancel-{n}", key=f"after-cancel-{n}"))
    rig.wait_events(3, type="CustomerCreated", _routing_key="CreateCustomer.succeeded")
    for n in range(3):
        assert len(rig.events_for(f"after-cancel-{n}")) == 1
    assert api_calls(rig, "add") == 4
    assert proc.poll() is None
    text = metric_text(port)
    assert 'provisioner_broker_channel_losses_total{reason="consumer_cancelled"} 1.0' in text
    wait_until(lambda: in_flight(port) == 0, 10, "nothing left in flight")


def test_results_of_a_lost_channel_are_dropped_and_nothing_runs_twice(rig: WorkerRig) -> None:
    # Given a worker busy with six creates against a slow API, each customer's disable
    # waiting behind its create in the pool
    port = rig.env()["PROVISIONER_HTTP_PORT"]
    proc = rig.start_worker(PROVISIONER_HTTP_PORT=port)
    rig.sandbox.control_post("/_sandbox/faults", {"latency_ms": 400})
    keys = [f"in-flight-{n}" for n in range(6)]
    for key in keys:
        rig.publish(customer_command(key, key=key))
        rig.publish({"type": "DisableCustomer", "idempotency_key": f"off-{key}", "customer": key})
    wait_until(lambda: api_calls(rig, "add") >= 1, 10, "commands in the API")
    # When the broker closes the worker's channel under them
    rig.channel.exchange_delete(rig.topology.dead_letter_exchange)
    rig.publish(customer_command("y" * 70, key="closes-channel-busy"))
    recovered(port, 1)
    # Then every command ends with its event, none of them called the API twice
    for key in keys:
        rig.wait_events(1, 30, idempotency_key=key, type="CustomerCreated")
    assert api_calls(rig, "add") == len(keys)
    for key in keys:
        rig.wait_events(1, 30, idempotency_key=f"off-{key}", type="CustomerDisabled")
    for key in keys + [f"off-{key}" for key in keys]:
        # a re-publish after a lost ack is the stored event, same event_id
        assert len({e["event_id"] for e in rig.events_for(key)}) == 1
    # And the in-flight gauge is exact again
    wait_until(lambda: in_flight(port) == 0, 10, "nothing left in flight")
    assert proc.poll() is None


def test_a_rejection_whose_ack_was_lost_is_published_again_with_the_same_event_id(
    rig: WorkerRig,
) -> None:
    # Given a ready worker, and a dead-letter exchange deleted so that parking an invalid
    # command makes the broker close the channel after its CommandRejected went out
    port = rig.env()["PROVISIONER_HTTP_PORT"]
    rig.start_worker(PROVISIONER_HTTP_PORT=port)
    wait_until(lambda: readyz(port)[0] == 200, 10, "ready")
    rig.channel.exchange_delete(rig.topology.dead_letter_exchange)
    # When an invalid command arrives (its channel dies before the ack; the broker redelivers)
    rig.publish(customer_command("x" * 70, key="rejected-twice"))
    # Then the redelivery publishes the rejection again: the same event, not a second one
    first, second = rig.wait_events(2, idempotency_key="rejected-twice", type="CommandRejected")
    assert second["event_id"] == first["event_id"]
    assert second["occurred_at"] == first["occurred_at"]
    # And the command is parked once the topology is declared again
    wait_until(lambda: rig.depth(rig.topology.dead_letter_queue) >= 1, 10, "dead letter")


def test_a_sequencer_that_cannot_consume_the_intake_makes_the_worker_unready(
    rig: WorkerRig,
) -> None:
    # Given a ready worker, the sequencer of its partitions
    port = rig.env()["PROVISIONER_HTTP_PORT"]
    proc = rig.start_worker(PROVISIONER_HTTP_PORT=port)
    wait_until(lambda: readyz(port)[0] == 200, 10, "ready")
    # When the intake queue is replaced by a classic queue of its name (declaring the
    # topology on the sequencer's new channel fails, again and again)
    intake = rig.topology.commands_queue
    rig.channel.queue_delete(intake)
    rig.channel.queue_declare(intake, durable=True)

    def unready() -> dict[str, Any] | None:
        code, body = readyz(port)
        return body if code == 503 else None

    # Then /readyz is 503 naming the sequencer and the broker's reason; the worker stays live
    body = wait_until(unready, 20, "unready")
    assert body["reason"].startswith(
        "sequencer: holds the sequencer lease but has not consumed the intake for"
    )
    assert "PRECONDITION_FAILED" in body["reason"]
    assert body["checks"]["partitions"] == body["checks"]["partition leases"] == "ok"
    assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    # And once the intake can be declared again, the worker is ready and sequences again
    rig.channel.queue_delete(intake)
    wait_until(lambda: readyz(port)[0] == 200, 20, "ready again")
    rig.publish(customer_command("after-intake", key="after-intake"))
    rig.wait_events(1, idempotency_key="after-intake", type="CustomerCreated")
    assert proc.poll() is None
