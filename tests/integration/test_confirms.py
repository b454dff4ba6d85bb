"""ConfirmTracker against the real broker: groups settle once, after every confirm, with
returns attributed to the right publish."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pika
import pytest

from sandbox.rigs import declare_tap
from tests.fixtures.wait import wait_until
from worker.broker.confirms import ConfirmGroup, ConfirmTracker
from worker.broker.topology import Topology

pytestmark = pytest.mark.integration

PUMP_S = 0.02


@pytest.fixture
def topology(prefix: str) -> Topology:
    return Topology(prefix, (30.0,), 20)


@pytest.fixture
def connection(amqp_url: str) -> Iterator[Any]:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    yield connection
    if connection.is_open:
        connection.close()


@pytest.fixture
def tracker(connection: Any, topology: Topology) -> ConfirmTracker:
    channel = connection.channel()
    topology.declare(channel)
    return ConfirmTracker(connection, channel)


def bind_tap(connection: Any, topology: Topology) -> str:
    return declare_tap(connection.channel(), topology, f"{topology.prefix}.tap")


def pump_until(connection: Any, condition: Any, message: str) -> Any:
    def pumped() -> Any:
        connection.process_data_events(time_limit=PUMP_S)
        return condition()

    return wait_until(pumped, 10, message)


def test_a_group_settles_once_after_all_its_publishes_are_confirmed(
    connection: Any, topology: Topology, tracker: ConfirmTracker
) -> None:
    # Given a tap on the events exchange and a group of two publishes
    tap = bind_tap(connection, topology)
    settled: list[ConfirmGroup] = []
    group = tracker.group(settled.append)
    publisher = tracker.publisher(group)
    # When both are published and the group sealed
    publisher.basic_publish(topology.events_exchange, "A.succeeded", b"one", None, True)
    publisher.basic_publish(topology.events_exchange, "A.succeeded", b"two", None, True)
    tracker.seal(group)
    pump_until(connection, lambda: settled, "the group to settle")
    connection.process_data_events(time_limit=PUMP_S)
    # Then it settled exactly once, confirmed, nothing returned, both messages routed
    assert settled == [group]
    assert (group.nacked, group.unconfirmed, group.returned_exchanges()) == (False, 0, set())
    depth = connection.channel().queue_declare(tap, passive=True).method.message_count
    assert depth == 2


def test_an_unroutable_mandatory_publish_is_marked_returned_in_its_own_group(
    connection: Any, topology: Topology, tracker: ConfirmTracker
) -> None:
    # Given no queue bound to the events exchange, and a routable retry publish in a
    # second group
    settled: list[ConfirmGroup] = []
    lost, kept = tracker.group(settled.append), tracker.group(settled.append)
    # When one group publishes an event nobody takes and the other a delayed retry
    tracker.publisher(lost).basic_publish(topology.events_exchange, "A.failed", b"x", None, True)
    tracker.seal(lost)
    retry_key = topology.retry_routing_key(0)
    tracker.publisher(kept).basic_publish(topology.retry_exchange, retry_key, b"x", None, True)
    tracker.seal(kept)
    pump_until(connection, lambda: len(settled) == 2, "both groups to settle")
    # Then only the unroutable one reports a return, from the events exchange
    assert lost.returned_exchanges() == {topology.events_exchange}
    assert kept.returned_exchanges() == set()


def test_many_groups_settle_in_publish_order_and_abandon_forgets_the_rest(
    connection: Any, topology: Topology, tracker: ConfirmTracker
) -> None:
    # Given a tap and 200 single-publish groups
    bind_tap(connection, topology)
    settled: list[int] = []
    for index in range(200):
        group = tracker.group(lambda _g, i=index: settled.append(i))
        body = str(index).encode()
        tracker.publisher(group).basic_publish(topology.events_exchange, "A.x", body, None, True)
        tracker.seal(group)
    # When the broker's (possibly multiple) acks arrive
    pump_until(connection, lambda: len(settled) == 200, "200 groups to settle")
    # Then each settled once, in order; and a group published after is abandonable
    assert settled == list(range(200))
    late = tracker.group(lambda _g: settled.append(-1))
    tracker.publisher(late).basic_publish(topology.events_exchange, "A.x", b"late", None, True)
    tracker.seal(late)
    assert tracker.abandon() == 1
    connection.process_data_events(time_limit=PUMP_S * 5)
    assert -1 not in settled
