"""Broker settings no test may change on the shared node, on a private RabbitMQ node.

``connection.blocked``: a memory alarm blocks the worker's publishes; the worker says so in
/readyz and metrics and resumes when the alarm clears, and a block longer than the confirm
timeout drops the connection instead of waiting forever. ``consumer_timeout``: a delivery
held past it makes the broker close the channel, which the worker reopens. Nothing is lost,
nothing runs twice."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fixtures.private_rabbitmq import PrivateRabbit
from tests.fixtures.wait import wait_until
from tests.integration.harness import WorkerRig, customer_command

pytestmark = pytest.mark.integration

ALARM = "0.0000001"  # of the machine's memory: always exceeded
NORMAL = "0.4"
SLOW_CALL_MS = 6000


@pytest.fixture
def blocked_rig(
    private_rabbitmq: PrivateRabbit, sandbox: Any, tmp_path: Path
) -> Iterator[WorkerRig]:
    rig = WorkerRig(private_rabbitmq.amqp_url, f"b{uuid.uuid4().hex[:8]}", sandbox, tmp_path)
    yield rig
    private_rabbitmq.ctl("set_vm_memory_high_watermark", NORMAL, check=False)
    rig.close()


def probe(port: str, path: str) -> tuple[int, dict[str, Any]]:
    answer = requests.get(f"http://127.0.0.1:{port}{path}", timeout=2)
    return answer.status_code, answer.json()


def metric(port: str, name: str) -> float:
    for line in requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def api_adds(rig: WorkerRig) -> int:
    counts: dict[str, Any] = rig.sandbox.control_get("/_sandbox/calls")
    return int(counts.get("calls", counts).get("add", 0))


def start_busy_worker(rig: WorkerRig, **env: str) -> tuple[Any, str]:
    """A worker in the middle of a slow API call for the command ``blocked-1``."""
    port = rig.env()["PROVISIONER_HTTP_PORT"]
    proc = rig.start_worker(PROVISIONER_HTTP_PORT=port, PROVISIONER_API_TIMEOUT="15", **env)
    # Long enough for rabbitmqctl (seconds on a busy machine) to raise the alarm meanwhile.
    rig.sandbox.control_post("/_sandbox/faults", {"latency_ms": SLOW_CALL_MS})
    rig.publish(customer_command("blocked-1", key="blocked-1"))
    wait_until(lambda: api_adds(rig) == 1, 10, "the command in the API")
    return proc, port


def test_a_memory_alarm_blocks_the_worker_visibly_until_it_clears(
    blocked_rig: WorkerRig, private_rabbitmq: PrivateRabbit
) -> None:
    rig = blocked_rig
    # Given a worker whose command is in a slow API call
    proc, port = start_busy_worker(rig)
    # When the broker raises a memory alarm (the outcome's publish gets the worker blocked)
    private_rabbitmq.ctl("set_vm_memory_high_watermark", ALARM)
    # Then /readyz says why it is not ready, the metric says blocked, and it stays alive
    wait_until(lambda: probe(port, "/readyz")[0] == 503, 20, "unready while blocked")
    assert probe(port, "/readyz")[1]["reason"] == "broker blocked the connection: low on memory"
    assert metric(port, "provisioner_broker_blocked") == 1
    assert probe(port, "/healthz")[0] == 200
    assert rig.drain_tap() == []  # the event cannot leave yet
    # When the alarm clears
    private_rabbitmq.ctl("set_vm_memory_high_watermark", NORMAL)
    # Then it is ready again, the command has its one event and later commands succeed
    wait_until(lambda: probe(port, "/readyz")[0] == 200, 20, "ready after the alarm")
    assert metric(port, "provisioner_broker_blocked") == 0
    rig.wait_events(1, idempotency_key="blocked-1", type="CustomerCreated")
    rig.publish(customer_command("blocked-2", key="blocked-2"))
    rig.wait_events(1, idempotency_key="blocked-2", type="CustomerCreated")
    assert api_adds(rig) == 2
    assert len(rig.events_for("blocked-1")) == 1
    assert proc.poll() is None


def test_a_block_longer_than_the_confirm_timeout_drops_the_connection_not_the_command(
    blocked_rig: WorkerRig, private_rabbitmq: PrivateRabbit
) -> None:
    rig = blocked_rig
    # Given a worker that waits at most 2 s for a confirm, busy with a slow command
    proc, port = start_busy_worker(rig, PROVISIONER_CONFIRM_TIMEOUT="2s")
    # When the broker blocks it for longer than that
    private_rabbitmq.ctl("set_vm_memory_high_watermark", ALARM)
    wait_until(lambda: metric(port, "provisioner_broker_reconnects_total") >= 1, 30, "dropped")
    assert "ConnectionBlockedTimeout" in rig.worker_log(proc)
    private_rabbitmq.ctl("set_vm_memory_high_watermark", NORMAL)
    # Then the command came back and was answered from the store: one API call, one event
    rig.wait_events(1, 30, idempotency_key="blocked-1", type="CustomerCreated")
    wait_until(lambda: probe(port, "/readyz")[0] == 200, 20, "ready after the alarm")
    assert api_adds(rig) == 1
    assert len({e["event_id"] for e in rig.events_for("blocked-1")}) == 1
    assert proc.poll() is None


def test_a_delivery_outliving_consumer_timeout_closes_the_channel_and_is_recovered(
    blocked_rig: WorkerRig, private_rabbitmq: PrivateRabbit
) -> None:
    rig = blocked_rig
    # Given a broker that closes a channel holding a delivery unacked for more than 1 s
    # (set on the private node only; a channel reads it when it opens)
    for setting, value in (("consumer_timeout", "1000"), ("channel_tick_interval", "200")):
        private_rabbitmq.ctl("eval", f"application:set_env(rabbit, {setting}, {value}).")
    try:
        port = rig.env()["PROVISIONER_HTTP_PORT"]
        proc = rig.start_worker(PROVISIONER_HTTP_PORT=port, PROVISIONER_API_TIMEOUT="10")
        # When a command's API call takes 3 s
        rig.sandbox.control_post("/_sandbox/faults", {"latency_ms": 3000})
        rig.publish(customer_command("slow-ack", key="slow-ack"))
        # Then the broker closes the channel, the worker reopens it and /readyz says why
        wait_until(lambda: probe(port, "/readyz")[1]["unready_episodes"] >= 1, 20, "closed")
        reason = probe(port, "/readyz")[1]["last_unready_reason"]
        assert "channel closed by the broker" in reason and "PRECONDITION_FAILED" in reason
        rig.sandbox.control_post("/_sandbox/faults", {"latency_ms": 0})
        # And the command ends with one event and one API call
        rig.wait_events(1, 30, idempotency_key="slow-ack", type="CustomerCreated")
        wait_until(lambda: probe(port, "/readyz")[0] == 200, 20, "ready again")
        assert api_adds(rig) == 1
        assert len({e["event_id"] for e in rig.events_for("slow-ack")}) == 1
        assert proc.poll() is None
    finally:
        private_rabbitmq.ctl("eval", "application:set_env(rabbit, consumer_timeout, 1800000).")
        private_rabbitmq.ctl("eval", "application:set_env(rabbit, channel_tick_interval, 60000).")
