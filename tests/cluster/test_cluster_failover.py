"""A real worker on a private three-node RabbitMQ cluster and a private PostgreSQL: the node
leading the commands queue is killed (-9) with 500 commands in flight, then PostgreSQL is
restarted under 500 more. Nothing is lost, nothing runs twice, and the worker never restarts.

Runs with ``make test`` (and alone with ``make cluster-test``); its nodes have their own
names, ports and directories, so the shared broker on 5672 is never touched.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.rigs import SandboxProcess, wait_until
from tests.cluster.rig import ClusterWorker, ReadinessWatch, Traffic, effects
from tests.fixtures.private_postgres import PrivatePostgres
from tests.fixtures.rabbit_cluster import ClusterNode, RabbitCluster, available
from worker.broker.topology import Topology
from worker.cli import main

pytestmark = [
    pytest.mark.integration,
    pytest.mark.cluster,
    pytest.mark.skipif(not available(), reason="the rabbitmq-server package is not installed"),
]

COMMANDS = 500
KILL_AFTER = 150  # events seen before the fault is injected
API_LATENCY_MS = 100  # with 4 API slots: ~40 commands/s, so the fault lands mid-stream
EVENTS_TIMEOUT_S = 120.0
REJOIN_TIMEOUT_S = 90.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[RabbitCluster]:
    with RabbitCluster(3) as formed:
        yield formed


@pytest.fixture(scope="module")
def api() -> Iterator[SandboxProcess]:
    process = SandboxProcess()
    try:
        process.control_post("faults", {"latency_ms": API_LATENCY_MS})
        yield process
    finally:
        process.stop()


@pytest.fixture
def prefix() -> str:
    return f"cl{uuid.uuid4().hex[:8]}"


def start_worker(
    cluster: RabbitCluster, api: Any, store_url: str, tmp_path: Path, prefix: str
) -> ClusterWorker:
    worker = ClusterWorker(cluster, api, store_url, tmp_path, prefix)
    wait_until(
        lambda: worker.consuming_ports() or worker.process.poll() is not None, 60, "consuming"
    )
    assert worker.process.poll() is None, worker.log()
    return worker


def went_down_and_up(states: list[bool]) -> bool:
    """Ready, then not ready, then ready again, in that order."""
    text = "".join("R" if ready else "n" for ready in states)
    return "Rn" in text and text.endswith("R")


def urls(cluster: RabbitCluster) -> str:
    return ",".join(node.url for node in cluster.nodes)


def settings(prefix: str, group_size: str = "0") -> list[str]:
    """The flags of a topology with the worker's delays and limit."""
    return [
        "--prefix", prefix, "--retry-delays", "1s,2s", "--delivery-limit", "20",
        "--quorum-group-size", group_size,
    ]  # fmt: skip


def check_topology(
    cluster: RabbitCluster, prefix: str, via: ClusterNode, group_size: str = "0"
) -> int:
    """``provisioner topology --check``, asking ``via``'s management API."""
    flags = ["--amqp-url", urls(cluster), "--management-url", via.management_url]
    return main(["topology", "--check", *flags, *settings(prefix, group_size)])


def assert_each_key_once(traffic: Traffic, keys: list[str]) -> None:
    """One terminal event per key (a copy re-sent after a lost ack is the same event), and
    every one a success: nothing failed, nothing was parked at the delivery limit."""
    event_ids = {key: {e["event_id"] for e in traffic.events[key]} for key in keys}
    assert [key for key, ids in event_ids.items() if len(ids) != 1] == []
    outcomes = Counter(e["_routing_key"] for key in keys for e in traffic.events[key])
    assert set(outcomes) == {"CreateCustomer.succeeded"}, outcomes
    assert traffic.depth(traffic.topology.dead_letter_queue) == 0


def test_killing_the_node_that_leads_the_commands_queue_loses_nothing(
    cluster: RabbitCluster,
    api: SandboxProcess,
    private_postgres: PrivatePostgres,
    tmp_path: Path,
    prefix: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a worker that knows the three nodes and declared its queues on the one it chose
    worker = start_worker(cluster, api, private_postgres.url, tmp_path, prefix)
    topology = Topology(prefix, (1.0, 2.0), 20)
    (port,) = worker.consuming_ports()
    leader_node = next(n for n in cluster.nodes if n.port == port)
    leader = cluster.queue_info(leader_node, topology.commands_queue)["leader"]
    assert cluster.node_named(leader) is leader_node
    readiness = ReadinessWatch(worker.port)
    readiness.start()
    other = next(n for n in cluster.nodes if n is not leader_node)
    traffic = Traffic(other, topology)
    applied_before = effects(api)
    try:
        # And 500 commands in flight
        keys = traffic.publish_customers(prefix, COMMANDS)
        traffic.wait_for_events(keys, KILL_AFTER, EVENTS_TIMEOUT_S)
        # When the node leading the commands queue (the worker's node) is killed
        leader_node.kill()
        # Then every command still ends in its event, through another node
        traffic.wait_for_events(keys, COMMANDS, EVENTS_TIMEOUT_S)
        assert_each_key_once(traffic, keys)
        assert effects(api) - applied_before == COMMANDS
        # And the same worker process failed over: not ready while it had no node, then ready
        assert worker.process.poll() is None and worker.pid == worker.process.pid
        assert worker.log().count('"worker started"') == 1
        assert worker.consuming_ports()[-1] != port
        wait_until(lambda: readiness.states[-1], 30, "ready again")
        assert went_down_and_up(readiness.states), readiness.states
        # And the killed node, started again, rejoins with its queue member
        leader_node.start()
        wait_until(lambda: cluster.running_nodes(other) == 3, REJOIN_TIMEOUT_S, "rejoined")
        wait_until(
            lambda: len(cluster.queue_info(other, topology.commands_queue)["online"]) == 3,
            REJOIN_TIMEOUT_S,
            "the commands queue's three members online",
        )
        # And topology --check finds the worker's queues on every node, and those of another
        # deployment declared with two members each under-replicated
        wait_until(lambda: check_topology(cluster, prefix, other) == 0, 60, "replicated")
        small = f"{prefix}x"
        assert main(["topology", "--amqp-url", urls(cluster), *settings(small, "2")]) == 0
        capsys.readouterr()
        assert check_topology(cluster, small, other, "2") == 1
        report = capsys.readouterr().out
        assert f"queue {small}.commands is under-replicated: 2 of 3 nodes" in report
        assert "guest" not in report
    finally:
        readiness.stopped.set()
        traffic.close()
        assert worker.stop() == 0, worker.log()[-3000:]


def test_a_postgresql_restart_mid_stream_loses_nothing(
    cluster: RabbitCluster,
    api: SandboxProcess,
    private_postgres: PrivatePostgres,
    tmp_path: Path,
    prefix: str,
) -> None:
    # Given a worker on the cluster and 500 commands in flight
    worker = start_worker(cluster, api, private_postgres.url, tmp_path, prefix)
    topology = Topology(prefix, (1.0, 2.0), 20)
    traffic = Traffic(cluster.nodes[0], topology)
    applied_before = effects(api)
    try:
        keys = traffic.publish_customers(prefix, COMMANDS)
        traffic.wait_for_events(keys, KILL_AFTER, EVENTS_TIMEOUT_S)
        # When PostgreSQL stops (its connections cut) until the worker has noticed, then starts
        private_postgres.stop()
        wait_until(lambda: "error connecting" in worker.log(), 60, "the store's pool noticed")
        private_postgres.start()
        # Then every command ends in exactly one event and one effect, none parked
        traffic.wait_for_events(keys, COMMANDS, EVENTS_TIMEOUT_S)
        assert_each_key_once(traffic, keys)
        assert effects(api) - applied_before == COMMANDS
        # And the worker rode it out in the same process
        assert worker.process.poll() is None and worker.pid == worker.process.pid
        assert worker.log().count('"worker started"') == 1
    finally:
        traffic.close()
        assert worker.stop() == 0, worker.log()[-3000:]
