"""Quorum queues created with another initial group size than the configured one (the
default is 3; queues of older deployments were created without it): declaring them again
must not stop a worker, and must still refuse any other difference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pika.exceptions import ChannelClosedByBroker

from tests.integration.harness import TEST_PARTITIONS, WorkerRig, customer_command
from worker.broker.group_size import GROUP_SIZE_ARG
from worker.broker.topology import Topology
from worker.config import QUORUM_GROUP_SIZE

pytestmark = pytest.mark.integration

DELAYS_S = (0.3, 0.6)  # the rig's tiers
DELIVERY_LIMIT = 20


def old_topology(prefix: str, group_size: int = 0) -> Topology:
    return Topology(prefix, DELAYS_S, DELIVERY_LIMIT, TEST_PARTITIONS, quorum_group_size=group_size)


def test_queues_created_with_another_group_size_keep_it(prefix: str, broker_channel: Any) -> None:
    # Given the topology created without a group size, its dead-letter queue with size 1
    old_topology(prefix).declare(broker_channel)
    dead_letter = f"{prefix}.dead-letter"
    broker_channel.queue_delete(dead_letter)
    broker_channel.queue_declare(
        dead_letter, durable=True, arguments={"x-queue-type": "quorum", GROUP_SIZE_ARG: 1}
    )
    # When it is declared with the default group size
    current = Topology(prefix, DELAYS_S, DELIVERY_LIMIT, TEST_PARTITIONS)
    assert current.quorum_group_size == QUORUM_GROUP_SIZE == 3
    done = current.declare(broker_channel)
    # Then every queue kept the size it was created with, and the caller's channel is open
    assert broker_channel.is_open
    assert f"queue {dead_letter} {{x-queue-type=quorum, {GROUP_SIZE_ARG}=1}}" in done
    commands = next(line for line in done if line.startswith(f"queue {prefix}.commands "))
    assert GROUP_SIZE_ARG not in commands and "x-delivery-limit=20" in commands
    # And --check sees nothing wrong
    assert current.check(broker_channel) == []
    # But any other difference is still refused
    other = Topology(prefix, DELAYS_S, DELIVERY_LIMIT + 1, TEST_PARTITIONS)
    with pytest.raises(ChannelClosedByBroker, match="x-delivery-limit"):
        other.declare(broker_channel)
    assert any("x-delivery-limit" in problem for problem in other.check(broker_channel))


def test_a_worker_starts_on_queues_created_without_a_group_size(
    amqp_url: str, prefix: str, sandbox: Any, tmp_path: Path, broker_channel: Any
) -> None:
    # Given a deployment whose queues were created before the group size had a default
    old_topology(prefix).declare(broker_channel)
    rig = WorkerRig(amqp_url, prefix, sandbox, tmp_path)
    try:
        # When a worker with the default settings starts and a command arrives
        worker = rig.start_worker()
        username = f"{prefix}@example.com"
        rig.publish(customer_command(username, key="gs-1", email=username))
        # Then the worker runs it, and said why it kept the queues' group size
        [event] = rig.wait_events(1, idempotency_key="gs-1")
        assert event["_routing_key"].endswith(".succeeded")
        assert worker.poll() is None
        assert "keeps the quorum group size it was created with" in rig.worker_log(worker)
    finally:
        rig.close()
