"""A holder whose hold clear did not happen is counted out of ``in_flight`` exactly once.

Found by the PostgreSQL soak with two processes: a fenced channel (its partition leases not
renewed in time) abandoned the holders whose hold clear was queued; each stayed counted in
``in_flight`` for good, and the SIGTERM drain then waited for them until its bound."""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from tests.unit.test_consumer_transit import DyingConnection
from tests.unit.test_partitioned_readiness import Clock, HoldsUnreadable, consumer_of_two
from worker.delivery import Delivery
from worker.outage import OutageAbandonedError
from worker.partitioned import PartitionedConsumer

PARTITION = 0


def holder_whose_clear_ended(
    error: BaseException | None,
) -> tuple[PartitionedConsumer, DyingConnection, list[str]]:
    """A consumer whose holder's outcome is confirmed and whose hold clear ended with
    ``error`` (or cleared); the hop back to the connection's thread is queued."""
    consumer = consumer_of_two(HoldsUnreadable(), Clock())
    connection = DyingConnection()
    consumer._connection = connection
    delivery = Delivery(
        channel=object(), delivery_tag=1, routing_key="0", properties=None, body=b"", started_at=0.0
    )
    consumer._count_in_flight(1)  # delivered, its outcome confirmed, its ack waiting
    consumer._count_running(PARTITION, 1)
    settled: list[str] = []
    settle: Callable[[], None] = lambda: settled.append("acked")  # noqa: E731
    future: Future[Any] = Future()
    if error is None:
        future.set_result(True)
    else:
        future.set_exception(error)
    epoch = consumer._epoch
    if isinstance(error, OutageAbandonedError):  # its channel was abandoned meanwhile
        consumer._epoch += 1
        consumer._running.clear()
    consumer._start_backlog = lambda key: None  # type: ignore[method-assign]
    cleared = functools.partial(
        consumer._on_hold_cleared, "alice", PARTITION, delivery, epoch, settle
    )
    consumer._after_hold_clear(delivery, cleared, future)
    return consumer, connection, settled


def test_a_holder_whose_channel_was_abandoned_is_counted_out_when_its_clear_gives_up() -> None:
    # Given a holder whose hold clear gave up because its channel was abandoned (fenced)
    consumer, connection, settled = holder_whose_clear_ended(
        OutageAbandonedError("its channel is gone")
    )
    # When the hop runs on the connection's thread
    for callback in connection.callbacks:
        callback()
    # Then it is no longer in flight (the broker redelivers it, and it replays), it was not
    # acked, and the new channel's count of the partition is not driven below zero
    assert consumer._in_flight == 0
    assert settled == []
    assert consumer._running_in(PARTITION) == 0


def test_a_holder_whose_connection_is_lost_with_the_hop_queued_is_counted_out_once() -> None:
    # Given a holder whose hold was cleared, the hop to ack it queued on a connection
    consumer, connection, settled = holder_whose_clear_ended(None)
    # When the connection is lost before the hop ran
    consumer._on_connection_lost(ConnectionError("node killed"))
    # Then the holder is counted out with it, and a late run of the hop changes nothing
    assert consumer._in_flight == 0
    for callback in connection.callbacks:
        callback()
    assert (consumer._in_flight, settled) == (0, [])


def test_a_cleared_holder_is_acked_by_its_hop() -> None:
    # Given a holder whose hold was cleared
    consumer, connection, settled = holder_whose_clear_ended(None)
    # When the hop runs / Then the holder is settled (acked), and its partition is free
    for callback in connection.callbacks:
        callback()
    assert settled == ["acked"]
    assert consumer._running_in(PARTITION) == 0
