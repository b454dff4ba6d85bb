"""Predecessor chains (docs/ordering.md, "Returned deliveries out of order"): the sequencer
names each command's predecessor in its customer's chain, and a partition's returned
deliveries wait for it. The real broker, a real store and a real sequencer thread."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pika
import pytest

from tests.fixtures.wait import wait_until
from tests.integration.harness import TEST_PARTITIONS, WorkerRig, customer_command, free_port
from tests.integration.test_order import applied_by_customer, metric_totals
from worker.assignment import Partitioning
from worker.broker import headers as h
from worker.broker.topology import Topology
from worker.config import Settings
from worker.sequencer import Sequencer, partition_of
from worker.store import open_store
from worker.store.order import Backend
from worker.store.order_upkeep import OrderUpkeep

pytestmark = pytest.mark.integration

PARTITIONS = 4


class AlwaysSequencer:
    """The ownership of a process that holds the sequencer lease, P fixed."""

    def is_sequencer(self, share: float = 1.0) -> bool:
        return True

    def partitioning(self) -> Partitioning:
        return Partitioning(PARTITIONS, PARTITIONS)


def command(kind: str, key: str, customer: str, **fields: Any) -> bytes:
    return json.dumps(
        {"type": kind, "idempotency_key": key, "customer": customer, **fields}
    ).encode()


@pytest.fixture
def sequenced(
    amqp_url: str, prefix: str, tmp_path: Path
) -> Iterator[tuple[Any, Topology, Sequencer]]:
    """A topology with 4 partitions, a publisher channel and a running sequencer."""
    topology = Topology(prefix, (0.3,), 20, PARTITIONS)
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    topology.declare(channel)
    channel.confirm_delivery()
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    settings = Settings(amqp_url=amqp_url, prefix=prefix, partitions=PARTITIONS)
    sequencer = Sequencer(
        settings,
        topology,
        AlwaysSequencer(),
        OrderUpkeep(cast(Backend, store)),  # type: ignore[arg-type]
    )
    sequencer.start()
    try:
        yield channel, topology, sequencer
    finally:
        sequencer.stop()
        sequencer.join(10)
        connection.close()
        store.close()


def routed(channel: Any, topology: Topology, count: int) -> dict[str, dict[str, Any]]:
    """Idempotency key -> headers of the first ``count`` commands found on the partitions
    (consumed: basic.get is refused on a single-active-consumer queue)."""
    found: dict[str, dict[str, Any]] = {}

    def on_message(_ch: Any, _method: Any, props: Any, body: bytes) -> None:
        found[json.loads(body)["idempotency_key"]] = dict(props.headers or {})

    for queue in topology.partition_queues:
        channel.basic_consume(queue, on_message, auto_ack=True)
    connection = channel.connection
    wait_until(
        lambda: connection.process_data_events(0.05) or len(found) >= count,
        20,
        f"{count} commands on the partitions",
    )
    return found


def test_the_sequencer_chains_each_customers_commands_and_a_rename_continues_the_chain(
    sequenced: tuple[Any, Topology, Sequencer],
) -> None:
    channel, topology, _ = sequenced
    # Given commands of two customers, interleaved, a rename of one, then a command for the
    # new name
    published = [
        command("EnableCustomer", "a1", "ada"),
        command("EnableCustomer", "b1", "bob"),
        command("DisableCustomer", "a2", "ada"),
        command("ChangeUsername", "a3", "ada", new_username="ada2"),
        command("DisableCustomer", "b2", "bob"),
        command("EnableCustomer", "a4", "ada2"),
    ]
    # When they are published on the commands exchange, and the sequencer routes them
    for body in published:
        kind = json.loads(body)["type"]
        channel.basic_publish(topology.commands_exchange, kind, body)
    headers = routed(channel, topology, len(published))
    # Then each command names the one before it of the same customer, the first none
    after = {key: found.get(h.AFTER) for key, found in headers.items()}
    assert after == {"a1": None, "b1": None, "a2": "a1", "a3": "a2", "b2": "b1", "a4": "a3"}
    # And the renamed customer's command is ordered with the original name's
    assert headers["a4"][h.ORDER_KEY] == "ada"


def test_a_delay_tier_copy_is_neither_chained_nor_keeps_a_forged_predecessor(
    sequenced: tuple[Any, Topology, Sequencer],
) -> None:
    channel, topology, _ = sequenced
    # Given a customer's command, then a delay-tier copy of another of its commands
    # carrying a predecessor header of its own, then the customer's next command
    channel.basic_publish(
        topology.commands_exchange, "EnableCustomer", command("EnableCustomer", "c1", "cy")
    )
    delayed = pika.BasicProperties(headers={h.ATTEMPTS: 1, h.AFTER: "forged"})
    channel.basic_publish(
        topology.commands_exchange,
        "DisableCustomer",
        command("DisableCustomer", "c0", "cy"),
        delayed,
    )
    channel.basic_publish(
        topology.commands_exchange, "DisableCustomer", command("DisableCustomer", "c2", "cy")
    )
    # When the sequencer routes them
    headers = routed(channel, topology, 3)
    # Then the copy names no predecessor, and the next command follows the first
    assert h.AFTER not in headers["c0"]
    assert headers["c2"][h.AFTER] == "c1"


def profile(name: str, key: str, **fields: str) -> dict[str, Any]:
    return {"type": "UpdateCustomerProfile", "idempotency_key": key, "customer": name, **fields}


def returned_to_partition(rig: WorkerRig, chain: list[tuple[dict[str, Any], str | None]]) -> None:
    """Publish ``chain`` (command, predecessor) to its customer's partition in the order
    given, with the headers the sequencer sets; deliver them to a consumer that closes its
    channel without acking, so they wait there redelivered, in that order."""
    name = chain[0][0]["customer"] if "customer" in chain[0][0] else chain[0][0]["username"]
    partition = partition_of(name, TEST_PARTITIONS)
    for body, after in chain:
        headers = {h.ORDER_KEY: name, h.ORIGINAL_ROUTING_KEY: body["type"]}
        if after is not None:
            headers[h.AFTER] = after
        rig.channel.basic_publish(
            rig.topology.partitions_exchange,
            str(partition),
            json.dumps(body).encode(),
            pika.BasicProperties(
                message_id=body["idempotency_key"], delivery_mode=2, headers=headers
            ),
        )
    taker = rig.connection.channel()
    taker.basic_qos(prefetch_count=len(chain))
    taken: list[bytes] = []
    queue = rig.topology.partition_queue(partition)
    taker.basic_consume(queue, lambda _ch, _m, _p, body: taken.append(body), auto_ack=False)
    wait_until(
        lambda: rig.connection.process_data_events(0.05) or len(taken) == len(chain),
        10,
        "every command delivered once",
    )
    taker.close()  # unacked: back to the partition, in delivery order, redelivered


def test_returned_commands_out_of_order_run_in_predecessor_order(rig: WorkerRig) -> None:
    # Given a customer's signup and two profile updates back on its partition, redelivered,
    # the latest update first (as a channel closed with it on its way returns it)
    name = "chain-1"
    create = customer_command(name)
    first = profile(name, "p1", first_name="Grace")
    second = profile(name, "p2", city="Paris")
    returned_to_partition(rig, [(second, "p1"), (create, None), (first, create["idempotency_key"])])
    # When a worker takes the partition
    port = free_port()
    worker = rig.start_worker(PROVISIONER_HTTP_PORT=str(port))
    # Then each command succeeded once, and the API saw them in publish order
    for key in (create["idempotency_key"], "p1", "p2"):
        [event] = rig.wait_events(1, 30, idempotency_key=key)
        assert event["_routing_key"].endswith("succeeded")
    assert applied_by_customer(rig)[name] == [
        ("add", None),
        ("manage", "set", ("first_name",)),
        ("manage", "set", ("city",)),
    ]
    # And the later update waited for its predecessor, none gave up, none waits now
    assert "a returned command waits for its predecessor" in rig.worker_log(worker)
    totals = metric_totals([port])
    assert totals["provisioner_predecessor_waits_given_up_total"] == 0
    assert totals["provisioner_commands_awaiting_predecessor"] == 0
    assert [len(rig.events_for(k)) for k in (create["idempotency_key"], "p1", "p2")] == [1, 1, 1]


def test_a_predecessor_that_never_comes_is_waited_for_only_the_configured_time(
    rig: WorkerRig,
) -> None:
    # Given a customer's signup and a profile update back on its partition, the update
    # naming a predecessor nobody will deliver (purged by an operator, say)
    name = "chain-2"
    create = customer_command(name)
    update = profile(name, "p-late", first_name="Ada")
    returned_to_partition(rig, [(update, "purged-key"), (create, None)])
    # When a worker configured to wait one second takes the partition
    port = free_port()
    worker = rig.start_worker(PROVISIONER_HTTP_PORT=str(port), PROVISIONER_PREDECESSOR_WAIT="1s")
    # Then the update runs after the wait, once, and the give-up is said and counted
    [event] = rig.wait_events(1, 30, idempotency_key="p-late")
    assert event["_routing_key"].endswith("succeeded")
    assert applied_by_customer(rig)[name] == [("add", None), ("manage", "set", ("first_name",))]
    log = rig.worker_log(worker)
    assert "gave up waiting for a predecessor" in log
    assert "s3cret-pass" not in log
    totals = metric_totals([port])
    assert totals["provisioner_predecessor_waits_given_up_total"] == 1
    assert totals["provisioner_commands_awaiting_predecessor"] == 0


def test_waiting_commands_that_fill_the_prefetch_are_given_back_behind_their_predecessors(
    rig: WorkerRig,
) -> None:
    # Given a customer's signup and twelve updates back on its partition, redelivered, the
    # last nine ahead of the first four (two returns in a row): more than the partition's
    # prefetch (8 with one API slot) would wait for predecessors stuck behind them
    name = "chain-3"
    create = customer_command(name)
    updates = [profile(name, f"u{i:02d}", first_name=f"N{i}") for i in range(1, 13)]
    bodies = [create, *updates]
    chain = [(b, bodies[i - 1]["idempotency_key"] if i else None) for i, b in enumerate(bodies)]
    returned_to_partition(rig, chain[4:] + chain[:4])
    # When a worker with one API slot takes the partition
    port = free_port()
    worker = rig.start_worker(PROVISIONER_HTTP_PORT=str(port), PROVISIONER_CONCURRENCY="1")
    # Then every command succeeded once, in publish order, none by giving up
    keys = [body["idempotency_key"] for body, _ in chain]
    events = wait_until(
        lambda: (
            [e for e in rig.drain_tap() if e.get("customer") == name][len(keys) - 1 :]
            and [e for e in rig.events if e.get("customer") == name]
        ),
        60,
        "every command's event",
    )
    assert [e["idempotency_key"] for e in events] == keys
    assert all(e["_routing_key"].endswith("succeeded") for e in events)
    assert "waiting commands given back behind their predecessors" in rig.worker_log(worker)
    totals = metric_totals([port])
    assert totals["provisioner_predecessor_waits_given_up_total"] == 0
    assert totals["provisioner_commands_awaiting_predecessor"] == 0


def test_a_draining_worker_gives_a_waiting_command_back_unrun(rig: WorkerRig) -> None:
    # Given a profile update back on its customer's partition, redelivered, whose
    # predecessor (the customer's signup) is not there yet, and a worker it waits in
    name = "chain-4"
    create = customer_command(name)
    update = profile(name, "p-drain", first_name="Lin")
    returned_to_partition(rig, [(update, create["idempotency_key"])])
    first = rig.start_worker(PROVISIONER_PREDECESSOR_WAIT="300s")
    wait_until(
        lambda: "a returned command waits for its predecessor" in rig.worker_log(first),
        30,
        "the update waiting for its predecessor",
    )
    # When that worker is told to stop (SIGTERM: it drains)
    assert rig.stop_worker(first) == 0
    # Then the update went back to its partition unrun: no effect, no event, no give-up
    partition = rig.topology.partition_queue(partition_of(name, TEST_PARTITIONS))
    assert rig.depth(partition) == 1
    assert name not in applied_by_customer(rig)
    assert rig.events_for("p-drain") == []
    assert "gave up waiting for a predecessor" not in rig.worker_log(first)
    # And once the signup reaches the partition, the next worker runs both, in publish order
    headers = {h.ORDER_KEY: name, h.ORIGINAL_ROUTING_KEY: "CreateCustomer"}
    rig.channel.basic_publish(
        rig.topology.partitions_exchange,
        str(partition_of(name, TEST_PARTITIONS)),
        json.dumps(create).encode(),
        pika.BasicProperties(message_id="m-create", delivery_mode=2, headers=headers),
    )
    rig.start_worker()
    for key in (create["idempotency_key"], "p-drain"):
        [event] = rig.wait_events(1, 30, idempotency_key=key)
        assert event["_routing_key"].endswith("succeeded")
    assert applied_by_customer(rig)[name] == [("add", None), ("manage", "set", ("first_name",))]
