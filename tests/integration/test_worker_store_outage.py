"""PostgreSQL stopped for a few seconds mid-stream (a private server: the shared one serves
everybody else). Commands that meet the outage go to a delay tier with the reason instead
of looping through redeliveries; none is lost, none runs twice, none is parked."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.private_postgres import PrivatePostgres
from tests.fixtures.wait import wait_until
from tests.integration.harness import WorkerRig, customer_command
from tests.integration.test_order import assert_every_flow_in_order, publish_interleaved

pytestmark = pytest.mark.integration

COMMANDS = 40


def api_adds(rig: WorkerRig) -> int:
    counts: dict[str, Any] = rig.sandbox.control_get("/_sandbox/calls")
    return int(counts.get("calls", counts).get("add", 0))


def test_postgres_stopped_mid_stream_loses_repeats_and_parks_nothing(
    rig: WorkerRig, private_postgres: PrivatePostgres
) -> None:
    # Given a worker on a PostgreSQL store (waiting 1 s for a connection, not 30), working
    # through a stream of commands
    proc = rig.start_worker(
        PROVISIONER_STORE_URL=private_postgres.url, PROVISIONER_STORE_POOL_WAIT="1s"
    )
    rig.sandbox.control_post("/_sandbox/faults", {"latency_ms": 600})
    keys = [f"pg-outage-{n}" for n in range(COMMANDS)]
    for key in keys:
        rig.publish(customer_command(key, key=key))
    rig.wait_events(3, 30, type="CustomerCreated")
    # When PostgreSQL stops until the worker has met the outage, then comes back
    private_postgres.stop()
    wait_until(lambda: "store unavailable" in rig.worker_log(proc), 30, "the outage met")
    private_postgres.start()
    # Then every command ends with exactly one success, each created once in the API
    rig.wait_events(COMMANDS, 90, type="CustomerCreated")
    for key in keys:
        assert len({e["event_id"] for e in rig.events_for(key)}) == 1, key
    assert api_adds(rig) == COMMANDS
    # And nothing failed or was parked (no delivery limit, no dead letter)
    assert not [e for e in rig.events if e["type"] != "CustomerCreated"]
    assert rig.depth(rig.topology.dead_letter_queue) == 0
    assert proc.poll() is None


def test_postgres_stopped_mid_flows_keeps_each_customers_order(
    rig: WorkerRig, private_postgres: PrivatePostgres
) -> None:
    # Given one worker on a PostgreSQL store (its partition leases fencing after 10 s without
    # the store), working through interleaved signup flows
    proc = rig.start_worker(
        PROVISIONER_STORE_URL=private_postgres.url,
        PROVISIONER_STORE_POOL_WAIT="1s",
        PROVISIONER_WORKER_DEAD_AFTER="20",
    )
    rig.sandbox.control_post("/_sandbox/faults", {"latency_ms": 300})
    expected = publish_interleaved(rig, [f"outage-flow-{n}" for n in range(6)])
    wait_until(lambda: rig.sandbox.log, 30, "the first API call")
    # When PostgreSQL stops until the worker has met the outage, then comes back
    private_postgres.stop()
    wait_until(lambda: "store unavailable" in rig.worker_log(proc), 30, "the outage met")
    private_postgres.start()
    # Then every flow succeeded, each customer's calls in publish order, nothing parked
    assert_every_flow_in_order(rig, expected)
    assert rig.depth(rig.topology.dead_letter_queue) == 0
    assert proc.poll() is None
