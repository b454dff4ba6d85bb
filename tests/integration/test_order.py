"""Per-customer order across separate ``provisioner run`` processes (docs/ordering.md).

Each customer's signup flow is published as a backlog, interleaved with the other
customers' flows; the sandbox's mutation log then shows, per customer, the API calls in the
order they were applied, which must be the publish order.
"""

from __future__ import annotations

import json
import os
import random
import signal
from collections import Counter, defaultdict
from typing import Any

import pika
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.wait import wait_until
from tests.integration.harness import TEST_PARTITIONS, WorkerRig, customer_command, free_port
from worker.sequencer import partition_of

pytestmark = pytest.mark.integration

SEED = 15


def flow(username: str) -> list[tuple[dict[str, Any], tuple[Any, ...]]]:
    """A signup flow: (command, the mutation log entry it must leave), in publish order."""
    base = {"customer": username}
    return [
        (customer_command(username), ("add", None)),
        (
            {
                "type": "AddCredential",
                "idempotency_key": f"{username}-cred",
                **base,
                "credential_name": "mailer",
                "credential_password": "s3cret-pass",
            },
            ("credential", "add"),
        ),
        (
            {
                "type": "UpdateCustomerProfile",
                "idempotency_key": f"{username}-p1",
                **base,
                "first_name": "Grace",
            },
            ("manage", "set", ("first_name",)),
        ),
        (
            {
                "type": "UpdateCustomerProfile",
                "idempotency_key": f"{username}-p2",
                **base,
                "city": "Paris",
            },
            ("manage", "set", ("city",)),
        ),
        (
            {
                "type": "DeleteCredential",
                "idempotency_key": f"{username}-uncred",
                **base,
                "credential_name": "mailer",
            },
            ("credential", "delete"),
        ),
    ]


def hold_behind_a_throttled_add(rig: WorkerRig, name: str) -> list[tuple[dict[str, Any], Any]]:
    """Create ``name``, then publish the rest of its flow while the API answers its
    credential add with 429s for longer than the immediate retries: the add goes to a delay
    tier and holds the customer. The published steps, in order."""
    rig.publish(customer_command(name))
    rig.wait_events(1, 30, idempotency_key=f"create-{name}")
    rule = {"call": "credential", "task": "add", "fault": "429", "count": 4}
    rig.sandbox.control_post("/_sandbox/faults", {"next": [rule]})
    steps = flow(name)[1:]
    for command, _ in steps:
        rig.publish(command)
    return steps


def publish_interleaved(rig: WorkerRig, customers: list[str]) -> dict[str, list[Any]]:
    """Publish every flow, customers interleaved at random, each flow in its own order."""
    flows = {name: flow(name) for name in customers}
    cursors = dict.fromkeys(customers, 0)
    rng = random.Random(SEED)
    pending = list(customers)
    while pending:
        name = rng.choice(pending)
        command, _ = flows[name][cursors[name]]
        rig.publish(command)
        cursors[name] += 1
        if cursors[name] == len(flows[name]):
            pending.remove(name)
    return {name: [entry for _, entry in steps] for name, steps in flows.items()}


def applied_by_customer(rig: WorkerRig) -> dict[str, list[Any]]:
    applied: dict[str, list[Any]] = defaultdict(list)
    for entry in rig.sandbox.log:
        user = entry.get("user") or entry.get("username")
        step: tuple[Any, ...] = (entry["call"], entry.get("task"))
        if entry.get("task") == "set":
            step += (tuple(entry["fields"]),)
        applied[user].append(step)
    return applied


def assert_every_flow_in_order(
    rig: WorkerRig, expected: dict[str, list[Any]]
) -> list[dict[str, Any]]:
    """Every flow's commands succeeded, and each customer's calls ran in publish order; the
    flows' events (a replayed one may be there twice, with the same event_id)."""
    total = sum(len(steps) for steps in expected.values())

    def flow_events() -> list[dict[str, Any]]:
        found = [e for e in rig.drain_tap() if e.get("customer") in expected]
        return found if len({e["idempotency_key"] for e in found}) >= total else []

    events = wait_until(flow_events, 120, f"{total} events of the flows")
    assert len({e["idempotency_key"] for e in events}) == total
    assert [e for e in events if e["_routing_key"].split(".")[-1] != "succeeded"] == []
    applied = applied_by_customer(rig)
    out_of_order = {
        name: applied[name] for name, steps in expected.items() if applied[name] != steps
    }
    assert out_of_order == {}
    return events


def start_workers(rig: WorkerRig, count: int, **env: str) -> list[Any]:
    workers = [rig.start_worker(**env) for _ in range(count)]
    wait_until(lambda: len(rig.owners_of_partitions()) == count, 30, f"{count} owners")
    return workers


@pytest.mark.parametrize("processes", [2, 3])
def test_separate_processes_run_every_customers_flow_in_publish_order(
    rig: WorkerRig, processes: int
) -> None:
    # Given 20 customers' signup flows, interleaved, waiting as a backlog
    rig.sandbox.control_post("/_sandbox/faults", {"latency_ms": 5})
    expected = publish_interleaved(rig, [f"ord{processes}-{i:02d}" for i in range(20)])
    # When separate worker processes consume it (joining one after the other)
    start_workers(rig, processes)
    # Then every command succeeded and each customer's calls ran in publish order
    assert_every_flow_in_order(rig, expected)


def test_order_holds_with_postgresql_and_three_processes(pg_url: str, rig: WorkerRig) -> None:
    # Given a backlog of interleaved flows and three processes sharing a PostgreSQL store
    rig.sandbox.control_post("/_sandbox/faults", {"latency_ms": 5})
    expected = publish_interleaved(rig, [f"pg-{i:02d}" for i in range(15)])
    # When three processes consume it
    for _ in range(3):
        rig.start_worker(PROVISIONER_STORE_URL=pg_url)
    # Then every flow ran in publish order
    assert_every_flow_in_order(rig, expected)


def test_a_process_killed_mid_flight_hands_its_partitions_over_in_order(rig: WorkerRig) -> None:
    # Given two processes working through a backlog on a slow API
    rig.sandbox.control_post("/_sandbox/faults", {"latency_ms": 30})
    expected = publish_interleaved(rig, [f"kill-{i:02d}" for i in range(24)])
    first, _second = start_workers(rig, 2)
    # When one is killed with SIGKILL while commands are in flight
    wait_until(lambda: len(rig.sandbox.log) >= 20, 60, "work under way")
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    # Then the survivor takes its partitions over and every flow still ran in order
    wait_until(lambda: len(rig.owners_of_partitions()) == 1, 30, "one owner left")
    assert_every_flow_in_order(rig, expected)


def test_scaling_from_one_to_three_and_back_keeps_the_order(rig: WorkerRig) -> None:
    # Given one process working through a backlog
    rig.sandbox.control_post("/_sandbox/faults", {"latency_ms": 20})
    expected = publish_interleaved(rig, [f"scale-{i:02d}" for i in range(24)])
    start_workers(rig, 1)
    first = rig.owners_of_partitions()
    # When two more join mid-stream, and then leave again (SIGTERM)
    wait_until(lambda: len(rig.sandbox.log) >= 10, 60, "work under way")
    extra = [rig.start_worker(), rig.start_worker()]
    wait_until(lambda: len(rig.owners_of_partitions()) == 3, 30, "three owners")
    for proc in extra:
        assert rig.stop_worker(proc) == 0
    # Then the first owns everything again and every flow ran in order
    wait_until(lambda: rig.owners_of_partitions() == first, 30, "back to one")
    assert_every_flow_in_order(rig, expected)


def test_a_command_for_the_new_username_runs_after_the_rename(rig: WorkerRig) -> None:
    # Given a customer, and names whose own partitions differ (4 partitions)
    old, new = "rename-old-1", "rename-new-1@example.com"
    start_workers(rig, 2)
    rig.publish(customer_command(old))
    rig.wait_events(1, 30, idempotency_key=f"create-{old}")
    # When the rename is slowed by a 429 and a disable for the new name follows it
    rule = {"call": "manage", "task": "setUsername", "fault": "429", "count": 1}
    rig.sandbox.control_post("/_sandbox/faults", {"next": [rule]})
    rig.publish(
        {"type": "ChangeUsername", "idempotency_key": "rn", "customer": old, "new_username": new}
    )
    rig.publish({"type": "DisableCustomer", "idempotency_key": "dis-new", "customer": new})
    rig.publish({"type": "DisableCustomer", "idempotency_key": "dis-old", "customer": old})
    # Then the disable of the new name ran after the rename and succeeded
    renamed = rig.wait_events(1, 30, idempotency_key="rn")[0]
    disabled = rig.wait_events(1, 30, idempotency_key="dis-new")[0]
    assert (renamed["type"], disabled["type"]) == ("UsernameChanged", "CustomerDisabled")
    # And the one for the old name got the API's answer: no such customer any more
    old_disable = rig.wait_events(1, 30, idempotency_key="dis-old")[0]
    assert old_disable["error"]["code"] == "customer_not_found"
    tasks = [e.get("task") for e in rig.sandbox.log]
    assert tasks.index("setUsername") < tasks.index("disable")


def test_a_customers_later_commands_wait_behind_one_in_a_delay_tier(rig: WorkerRig) -> None:
    # Given a customer, two worker processes, and an API refusing the next credential adds
    # with a 429 (for longer than the immediate retries: the add goes to a delay tier)
    name = "held-1"
    ports = [free_port(), free_port()]
    for port in ports:
        rig.start_worker(PROVISIONER_HTTP_PORT=str(port))
    wait_until(lambda: len(rig.owners_of_partitions()) == 2, 30, "2 owners")
    # When the add is followed by the customer's delete of that credential and a profile change
    steps = hold_behind_a_throttled_add(rig, name)
    # Then each ran after the add came back from its delay tier, and all succeeded
    keys = [command["idempotency_key"] for command, _ in steps]
    events = {e["idempotency_key"]: e for e in rig.wait_events(len(steps) + 1, 60, customer=name)}
    assert [events[k]["_routing_key"].split(".")[-1] for k in keys] == ["succeeded"] * len(keys)
    assert events[keys[0]]["attempts"] >= 2
    assert applied_by_customer(rig)[name] == [("add", None)] + [step for _, step in steps]
    # And nothing is left parked or held
    assert rig.order_rows() == (0, 0)
    # And the metrics say so: commands held behind the add, the partitions split, one sequencer
    totals = metric_totals(ports)
    assert totals["provisioner_customer_holds_total"] >= 1
    assert totals["provisioner_commands_held_total"] >= 2
    assert totals["provisioner_partitions_owned"] == TEST_PARTITIONS
    assert totals["provisioner_sequencer_active"] == 1


def metric_totals(ports: list[int]) -> Counter[str]:
    totals: Counter[str] = Counter()
    for port in ports:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                totals[sample.name] += int(sample.value)
    return totals


def test_a_rolling_update_from_one_consumed_queue_loses_and_doubles_nothing(
    rig: WorkerRig,
) -> None:
    # Given today's topology holding commands: a backlog in the commands queue and one in a
    # delay tier, as the previous version left them
    creates = [customer_command(f"upg-{i:02d}") for i in range(20)]
    for command in creates:
        rig.publish(command)
    delayed = customer_command("upg-delayed")
    rig.channel.basic_publish(
        rig.topology.retry_exchange,
        rig.topology.retry_routing_key(0),
        json.dumps(delayed).encode(),
        pika.BasicProperties(delivery_mode=2, headers={"x-provisioner-attempts": 1}),
    )
    # When a worker of the previous kind (consuming that queue itself) and a new one run side
    # by side, and then the old one stops (a rolling update)
    old = rig.start_worker(PROVISIONER_PARTITIONS="0")
    rig.start_worker()
    wait_until(lambda: len(rig.drain_tap()) >= 5, 30, "work under way")
    assert rig.stop_worker(old) == 0
    # Then every command ended exactly once, successfully
    keys = [c["idempotency_key"] for c in [*creates, delayed]]
    wait_until(
        lambda: {e["idempotency_key"] for e in rig.drain_tap()} >= set(keys), 60, "every key"
    )
    events = rig.drain_tap()
    assert sorted({e["idempotency_key"] for e in events}) == sorted(keys)
    assert len({e["event_id"] for e in events}) == len(keys)
    assert {e["type"] for e in events} == {"CustomerCreated"}
    # And with the new worker alone, a customer's flow runs in publish order
    expected = publish_interleaved(rig, ["upg-flow-1", "upg-flow-2"])
    assert_every_flow_in_order(rig, expected)


def test_a_new_owner_resumes_a_held_customer_whose_owner_was_killed(rig: WorkerRig) -> None:
    # Given two processes, and a customer held behind a credential add in a delay tier with
    # its later commands parked in the store
    name = "resume-1"
    workers = {
        worker_id: rig.start_worker(PROVISIONER_WORKER_ID=worker_id)
        for worker_id in ("order-a", "order-b")
    }
    wait_until(lambda: len(rig.owners_of_partitions()) == 2, 30, "2 owners")
    steps = hold_behind_a_throttled_add(rig, name)
    wait_until(lambda: rig.order_rows() == (1, len(steps) - 1), 30, "the later ones parked")
    # When the process owning the customer's partition is killed with SIGKILL
    owner = rig.partition_owners()[f"partition-{partition_of(name, TEST_PARTITIONS)}"]
    os.kill(workers[owner].pid, signal.SIGKILL)
    workers[owner].wait(timeout=10)
    # Then the other takes the partition over, runs the held add and then the parked ones
    events = {e["idempotency_key"]: e for e in rig.wait_events(len(steps) + 1, 60, customer=name)}
    keys = [command["idempotency_key"] for command, _ in steps]
    assert [events[k]["_routing_key"].split(".")[-1] for k in keys] == ["succeeded"] * len(keys)
    assert applied_by_customer(rig)[name] == [("add", None)] + [step for _, step in steps]
    wait_until(lambda: rig.order_rows() == (0, 0), 10, "nothing left held or parked")
