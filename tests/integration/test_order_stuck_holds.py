"""A hold whose holder never comes back (docs/ordering.md, "Stuck holds"): reported as
overdue, released by an operator, and the customer's parked commands then run in order;
the holder's copy, should it come back, runs after them and is reported. A real
``provisioner run`` process, the real broker, store and sandbox."""

from __future__ import annotations

import json
from typing import Any

import pika
import pytest

from tests.fixtures.wait import wait_until
from tests.integration.harness import TEST_PARTITIONS, WorkerRig, customer_command, free_port
from tests.integration.test_order import applied_by_customer, metric_totals
from worker.broker.topology import Topology
from worker.cli import main

pytestmark = pytest.mark.integration

DELAY = "3s"  # long enough to purge the holder's copy from its tier by hand


def profile(name: str, key: str, **fields: str) -> dict[str, Any]:
    return {"type": "UpdateCustomerProfile", "idempotency_key": key, "customer": name, **fields}


def test_a_released_hold_whose_holder_was_purged_lets_the_parked_commands_run_in_order(
    rig: WorkerRig,
) -> None:
    # Given a worker, and a customer held behind a profile update in a delay tier, with two
    # later profile updates parked behind it
    name, port = "stuck-1", free_port()
    rig.start_worker(
        PROVISIONER_HTTP_PORT=str(port),
        PROVISIONER_RETRY_DELAYS=DELAY,
        PROVISIONER_HOLD_OVERDUE_MARGIN="1s",
    )
    rig.publish(customer_command(name))
    rig.wait_events(1, 30, idempotency_key=f"create-{name}")
    rule = {"call": "manage", "task": "set", "fault": "429", "count": 4}
    rig.sandbox.control_post("/_sandbox/faults", {"next": [rule]})
    rig.publish(profile(name, "p0", last_name="Lovelace"))
    rig.publish(profile(name, "p1", first_name="Ada"))
    rig.publish(profile(name, "p2", city="London"))
    tiers = Topology(rig.prefix, (3.0,), 20, TEST_PARTITIONS)
    tier, tier_routing_key = tiers.retry_queue(0), tiers.retry_routing_key(0)
    wait_until(lambda: rig.order_rows() == (1, 2) and rig.depth(tier) == 1, 30, "held")
    # When an operator purges the holder's delay-tier copy
    rig.channel.queue_purge(tier)
    # Then the hold is reported overdue once its tier and the margin have passed
    wait_until(lambda: overdue(port) == 1, 30, "the overdue metric")
    # And when the operator releases it
    assert main(["order", "release", name, "--store-url", rig.env()["PROVISIONER_STORE_URL"]]) == 0
    # Then the parked updates run, in publish order, and nothing is held any more
    for key in ("p1", "p2"):
        [event] = rig.wait_events(1, 30, idempotency_key=key)
        assert event["_routing_key"].endswith("succeeded")
    assert applied_by_customer(rig)[name] == [
        ("add", None),
        ("manage", "set", ("first_name",)),
        ("manage", "set", ("city",)),
    ]
    wait_until(lambda: rig.order_rows() == (0, 0), 10, "nothing left held or parked")
    wait_until(lambda: overdue(port) == 0, 10, "no hold overdue")
    totals = metric_totals([port])
    assert totals["provisioner_order_holds_released_total"] == 1
    assert rig.events_for("p0") == []  # its copy is gone: no event, as the operator chose
    # And when a copy of the released holder shows up after all (from its delay tier)
    holder = profile(name, "p0", last_name="Lovelace")
    rig.channel.basic_publish(
        rig.topology.retry_exchange,
        tier_routing_key,
        json.dumps(holder).encode(),
        pika.BasicProperties(delivery_mode=2, headers={"x-provisioner-attempts": 1}),
    )
    # Then it runs after the commands it held, and says so
    [event] = rig.wait_events(1, 30, idempotency_key="p0")
    assert event["_routing_key"].endswith("succeeded")
    assert applied_by_customer(rig)[name][-1] == ("manage", "set", ("last_name",))
    assert metric_totals([port])["provisioner_order_released_holders_returned_total"] == 1


def overdue(port: int) -> int:
    return metric_totals([port])["provisioner_order_holds_overdue"]
