"""The sequencer takes up the intake only with a fresh enough lease (docs/ordering.md,
``START_FRESH_SHARE``): starting with a lease about to fence would close the intake channel
a second time while its returned deliveries are half received, out of order."""

from __future__ import annotations

import threading
from typing import Any, cast

import pytest

from tests.fixtures.wait import wait_until
from worker.assignment import Partitioning
from worker.broker.topology import Topology
from worker.config import Settings
from worker.partitions import START_FRESH_SHARE
from worker.sequencer import Sequencer

pytestmark = pytest.mark.integration

PARTITIONS = 2


class AgingLease:
    """The sequencer lease, renewed ``age_share`` of its fencing window ago."""

    def __init__(self, age_share: float) -> None:
        self.age_share = age_share
        self.asked_to_start = threading.Semaphore(0)

    def is_sequencer(self, share: float = 1.0) -> bool:
        if share == START_FRESH_SHARE:
            self.asked_to_start.release()
        return self.age_share < share

    def partitioning(self) -> Partitioning:
        return Partitioning(PARTITIONS, PARTITIONS)


class NoAliases:
    def aliases(self) -> dict[str, str]:
        return {}


def intake_consumers(channel: Any, topology: Topology) -> int:
    declared = channel.queue_declare(topology.commands_queue, passive=True)
    return int(declared.method.consumer_count)


def test_a_sequencer_with_a_lease_about_to_fence_waits_for_a_renewal(
    amqp_url: str, prefix: str, broker_channel: Any
) -> None:
    # Given the topology, and a process holding the sequencer lease renewed three quarters
    # of its fencing window ago
    topology = Topology(prefix, (30.0,), 5, PARTITIONS)
    topology.declare(broker_channel)
    lease = AgingLease(age_share=0.75)
    sequencer = Sequencer(
        Settings(amqp_url=amqp_url), topology, cast(Any, lease), cast(Any, NoAliases())
    )
    sequencer.start()
    try:
        # When its loop has looked at the lease a few times
        for _ in range(3):
            assert lease.asked_to_start.acquire(timeout=10)
        # Then it has not consumed the intake
        assert intake_consumers(broker_channel, topology) == 0
        # And once the lease is renewed it does
        lease.age_share = 0.0
        wait_until(
            lambda: intake_consumers(broker_channel, topology) == 1, 10, "the intake consumed"
        )
    finally:
        sequencer.stop()
        sequencer.join(10)
    assert not sequencer.is_alive()
