"""Changing PROVISIONER_PARTITIONS online (docs/ordering.md, "Changing P"): a deployment of 4
partitions holding a backlog, and a customer held in a delay tier, rolls to workers
configured with 6; the switch happens by itself and every customer's commands still run in
publish order. Separate ``provisioner run`` processes, the real broker, store and sandbox."""

from __future__ import annotations

from typing import cast

import pytest

from tests.fixtures.wait import wait_until
from tests.integration.harness import TEST_PARTITIONS, WorkerRig, free_port
from tests.integration.test_order import (
    applied_by_customer,
    assert_every_flow_in_order,
    hold_behind_a_throttled_add,
    metric_totals,
    publish_interleaved,
)
from worker.store import open_store
from worker.store.order import Backend
from worker.store.order_upkeep import OrderUpkeep

pytestmark = pytest.mark.integration

NEW_PARTITIONS = TEST_PARTITIONS + 2
DELAY = "2s"  # the held customer's add waits in its tier while the switch runs


def partitioning(rig: WorkerRig) -> tuple[int, str | None, dict[str, int | None]]:
    store = open_store(rig.env()["PROVISIONER_STORE_URL"])
    try:
        return OrderUpkeep(cast(Backend, store)).partitioning()
    finally:
        store.close()


def test_workers_configured_with_another_p_switch_online_keeping_every_order(
    rig: WorkerRig,
) -> None:
    # Given a worker with 4 partitions, a customer held behind a credential add in a delay
    # tier, and a backlog of interleaved flows on a slow API
    old = rig.start_worker(PROVISIONER_RETRY_DELAYS=DELAY)
    held = "repart-held"
    held_steps = hold_behind_a_throttled_add(rig, held)
    wait_until(lambda: rig.order_rows() == (1, len(held_steps) - 1), 30, "the customer held")
    rig.sandbox.control_post("/_sandbox/faults", {"latency_ms": 20})
    expected = publish_interleaved(rig, [f"repart-{i:02d}" for i in range(16)])
    assert partitioning(rig)[0] == TEST_PARTITIONS
    # When it is replaced by a worker configured with 6 (a rolling update)
    port = free_port()
    new = rig.start_worker(
        PROVISIONER_PARTITIONS=str(NEW_PARTITIONS),
        PROVISIONER_RETRY_DELAYS=DELAY,
        PROVISIONER_HTTP_PORT=str(port),
    )
    assert rig.stop_worker(old) == 0
    # Then the deployment switches to 6 partitions by itself, the new worker owning them all
    wait_until(lambda: partitioning(rig)[:2] == (NEW_PARTITIONS, None), 60, "the switch")
    wait_until(
        lambda: (
            sorted(n for n in rig.partition_owners() if n.startswith("partition-"))
            == sorted(f"partition-{i}" for i in range(NEW_PARTITIONS))
        ),
        30,
        "6 partitions owned",
    )
    gauges = metric_totals([port])
    assert (gauges["provisioner_partitions"], gauges["provisioner_partitions_switching"]) == (6, 0)
    # And every flow, and the held customer's, ran in publish order, each command once
    assert_every_flow_in_order(rig, expected)
    rig.wait_events(len(held_steps) + 1, 60, customer=held)
    assert applied_by_customer(rig)[held] == [("add", None)] + [s for _, s in held_steps]
    wait_until(lambda: rig.order_rows() == (0, 0), 10, "nothing left held or parked")
    assert new.poll() is None
