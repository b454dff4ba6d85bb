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
from worker.broker import headers as h
from worker.broker.topology import Topology
from worker.config import Settings
from worker.partitions import Partitioning
from worker.sequencer import Sequencer
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
