"""Closing a channel that holds deliveries, against the real broker (a quorum queue): pika's
``BlockingChannel.close`` puts a customer's later commands back ahead of its earlier ones,
``ConsumingChannel.close_keeping_order`` does not (docs/ordering.md, "A store outage")."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pika
import pytest

from tests.fixtures.wait import wait_until
from worker.broker.channel import ConsumingChannel
from worker.broker.topology import Topology

pytestmark = pytest.mark.integration

HELD = 4  # taken (unacked) before the consumer starts: an owner's running commands
PENDING = 12  # delivered to the consumer but not yet dispatched to its callback
CLOSE_WAIT_S = 5.0


@pytest.fixture
def connection(amqp_url: str) -> Iterator[Any]:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    yield connection
    if connection.is_open:
        connection.close()


def returned_order(
    connection: Any, prefix: str, close: Callable[[ConsumingChannel], None]
) -> list[int]:
    """Bodies 0..N-1 in a quorum queue; a channel takes the first ``HELD`` (unacked)
    and has the next ``PENDING`` delivered but not dispatched; ``close`` closes it; the order
    in which a new consumer then receives them."""
    topology = Topology(prefix, (30.0,), 20, 1)
    consuming = ConsumingChannel(connection, topology, PENDING, lambda *_: None, "")
    publisher = connection.channel()
    publisher.confirm_delivery()
    queue = f"{prefix}.scratch"  # a partition's kind of queue, without its single consumer
    arguments = {"x-queue-type": "quorum", "x-delivery-limit": 20}
    publisher.queue_declare(queue, durable=True, arguments=arguments)
    total = HELD + PENDING + 4
    for body in range(total):
        publisher.basic_publish("", queue, str(body).encode())
    # Given a channel holding the first messages unacked (taken one by one)
    for _ in range(HELD):
        wait_until(lambda: consuming.channel.basic_get(queue)[0], 10, "a message")
    # And the next ones delivered to its consumer, read from the socket but not dispatched
    # (calls on another channel read the connection without dispatching)
    consuming.channel.basic_consume(queue, lambda *_: None, auto_ack=False)
    ready = lambda: publisher.queue_declare(queue, passive=True).method.message_count  # noqa: E731
    wait_until(lambda: ready() == total - HELD - PENDING, 10, "the consumer's deliveries sent")
    # When the channel is closed
    close(consuming)
    # Then a new consumer receives them in this order
    received: list[int] = []
    reader = connection.channel()
    reader.basic_consume(queue, lambda ch, m, p, body: received.append(int(body)), auto_ack=True)
    wait_until(lambda: connection.process_data_events(0.05) or len(received) == total, 10, "all")
    return received


def test_pikas_close_puts_undispatched_deliveries_ahead_of_held_ones(
    connection: Any, prefix: str
) -> None:
    received = returned_order(connection, prefix, lambda consuming: consuming.channel.close())
    assert received[:HELD] != list(range(HELD))  # what this test guards against


def test_the_order_keeping_close_returns_every_delivery_in_order(
    connection: Any, prefix: str
) -> None:
    received = returned_order(
        connection, prefix, lambda consuming: consuming.close_keeping_order(CLOSE_WAIT_S)
    )
    assert received == sorted(received)
