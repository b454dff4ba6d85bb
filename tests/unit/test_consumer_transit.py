"""An outcome queued for a connection that is then lost is counted out of ``in_flight`` once.

pika runs an ``add_callback_threadsafe`` callback only while its connection is pumped: one
queued on a connection that dies never runs. Without counting those out, a failover left
``in_flight_commands`` above zero and SIGTERM's drain waited for a command that was gone.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from worker.broker.topology import Topology
from worker.config import Settings
from worker.consumer import Consumer
from worker.decision import Envelope
from worker.delivery import Delivery


class DyingConnection:
    """Takes callbacks like pika's connection, and never runs them (it is about to die)."""

    is_open = True

    def __init__(self) -> None:
        self.callbacks: list[Callable[[], None]] = []

    def add_callback_threadsafe(self, callback: Callable[[], None]) -> None:
        self.callbacks.append(callback)

    def close(self) -> None:
        self.is_open = False


def consumer_with_outcome_in_transit() -> tuple[Consumer, DyingConnection]:
    consumer = Consumer(Settings(), executor=None, topology=Topology("t", (1.0,), 20))  # type: ignore[arg-type]
    connection = DyingConnection()
    consumer._connection = connection
    delivery = Delivery(
        channel=object(), delivery_tag=1, routing_key="", properties=None, body=b"", started_at=0.0
    )
    future: Future[Any] = Future()
    future.set_result(None)
    consumer._count_in_flight(1)
    consumer._on_done_in_pool(delivery, Envelope(None, None, None, 0), future)
    return consumer, connection


def test_a_lost_connection_counts_out_the_outcomes_queued_on_it() -> None:
    # Given a command whose outcome is queued on the connection's thread
    consumer, connection = consumer_with_outcome_in_transit()
    assert consumer._in_flight == 1
    # When the connection is lost before its callbacks ran
    consumer._on_connection_lost(ConnectionError("node killed"))
    # Then the command is no longer in flight (the broker redelivers it)
    assert consumer._in_flight == 0
    # And a late run of the queued callback counts nothing twice and settles nothing
    for callback in connection.callbacks:
        callback()
    assert consumer._in_flight == 0


def test_an_outcome_that_arrives_is_counted_out_by_its_own_callback_only() -> None:
    # Given a command whose outcome is queued, on a channel that is no longer the consumer's
    consumer, connection = consumer_with_outcome_in_transit()
    # When the callback runs on the connection's thread
    for callback in connection.callbacks:
        callback()
    # Then the command left in_flight once, and a later loss of the connection changes nothing
    assert consumer._in_flight == 0
    consumer._on_connection_lost(ConnectionError("node killed"))
    assert consumer._in_flight == 0


def finish(consumer: Consumer, tag: int) -> None:
    """A pool thread hands back the outcome of the delivery with ``tag``."""
    delivery = Delivery(
        channel=object(),
        delivery_tag=tag,
        routing_key="",
        properties=None,
        body=b"",
        started_at=0.0,
    )
    future: Future[Any] = Future()
    future.set_result(None)
    consumer._count_in_flight(1)
    consumer._on_done_in_pool(delivery, Envelope(None, None, None, 0), future)


def test_outcomes_that_finish_while_a_hop_is_queued_ride_on_it() -> None:
    # Given an outcome queued on the connection's thread
    consumer, connection = consumer_with_outcome_in_transit()
    # When two more finish before the connection's thread ran the hop
    finish(consumer, 2)
    finish(consumer, 3)
    # Then one wake-up of the connection's thread carries all three
    assert len(connection.callbacks) == 1
    assert consumer._in_flight == 3
    connection.callbacks.pop()()
    assert consumer._in_flight == 0
    # And the next outcome queues a hop of its own
    finish(consumer, 4)
    assert len(connection.callbacks) == 1


def test_after_a_lost_connection_the_next_outcome_queues_a_hop_on_the_new_one() -> None:
    # Given a hop queued on a connection that is then lost, with its outcome counted out
    consumer, dead = consumer_with_outcome_in_transit()
    consumer._on_connection_lost(ConnectionError("node killed"))
    # When a command finishes on the new connection
    fresh = DyingConnection()
    consumer._connection = fresh
    finish(consumer, 2)
    # Then its outcome does not wait for the dead connection's hop: it queues its own
    assert (len(dead.callbacks), len(fresh.callbacks)) == (1, 1)
    fresh.callbacks.pop()()
    assert consumer._in_flight == 0


def test_outcomes_that_find_the_connection_closed_are_counted_out_together() -> None:
    # Given a connection that closed with a command still running
    consumer = Consumer(Settings(), executor=None, topology=Topology("t", (1.0,), 20))  # type: ignore[arg-type]
    connection = DyingConnection()
    connection.close()
    consumer._connection = connection
    # When its outcome comes back
    finish(consumer, 1)
    # Then it is counted out at once (the broker redelivers it), and no hop is left queued
    assert consumer._in_flight == 0
    assert connection.callbacks == []
    assert not consumer._outcomes_hop_queued
