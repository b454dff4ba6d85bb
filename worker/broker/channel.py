"""One channel consuming the commands queue, and what the broker did to it.

A ``BlockingConnection`` does not raise when the broker closes one of its channels (a publish
to a missing exchange, a delivery that outlived ``consumer_timeout``) or cancels its consumer
(the queue deleted, its leader moved): the worker would sit there connected, consuming
nothing. ``ConsumingChannel`` registers both notifications and ``problem()`` tells the
consumer's loop, after each turn, that this channel must be replaced and why.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from worker.broker.confirms import ConfirmTracker
from worker.broker.frames import ChannelFrames
from worker.broker.topology import Topology

log = logging.getLogger(__name__)

CHANNEL_CLOSED = "channel_closed"
CONSUMER_CANCELLED = "consumer_cancelled"
CONFIRM_TIMEOUT = "confirm_timeout"
REASON_MAX_LENGTH = 300
CLOSE_POLL_S = 0.05
# Before the close: a delivery on its way when the channel closes is put back *ahead* of the
# channel's other unacked ones (3.10, checked: one ack then an immediate close returned the
# delivery it freed first; 10 ms later, all in order). Deliveries freed by the last acks
# arrive meanwhile and are returned in their place.
SETTLE_S = 0.1


class ConsumingChannel:
    """Opens a channel on ``connection``, declares the topology, consumes with confirms."""

    def __init__(
        self,
        connection: Any,
        topology: Topology,
        prefetch: int,
        on_message: Callable[[Any, Any, Any, bytes], None],
        queue: str | None = None,
        *,
        batch_acks: bool = False,
    ) -> None:
        """Consumes ``queue`` (default: the commands queue), or nothing when it is ``""``
        (``worker.partitioned`` subscribes to its partitions itself). With ``batch_acks``
        its single acks leave at ``frames.flush_acks()`` (``worker.broker.acks``)."""
        self._lost: tuple[str, str] | None = None
        self._closing = False
        channel = connection.channel()
        self.channel = channel
        self.frames = ChannelFrames(channel, batch_acks=batch_acks)
        self.frames.on_close(self._on_closed)
        channel.add_on_cancel_callback(self._on_cancelled)
        topology.declare(channel)
        self.confirms = ConfirmTracker(connection, channel)
        channel.basic_qos(prefetch_count=prefetch)
        queue = topology.commands_queue if queue is None else queue
        self.consumer_tag: str = (
            channel.basic_consume(queue, on_message, auto_ack=False) if queue else ""
        )

    # -- broker notifications (inside process_data_events) -----------------------------

    def _on_closed(self, reason: Exception) -> None:
        if not self._closing and self._lost is None:
            why = f"channel closed by the broker: {reason}"[:REASON_MAX_LENGTH]
            self._lost = (CHANNEL_CLOSED, why)

    def _on_cancelled(self, _frame: Any) -> None:
        if self._lost is None:
            why = "the broker cancelled the consumer (queue deleted or its leader moved)"
            self._lost = (CONSUMER_CANCELLED, why)

    # -- read by the consumer's loop ---------------------------------------------------

    def problem(self, confirm_timeout_s: float, *, blocked: bool) -> tuple[str, str] | None:
        """``(kind, reason)`` when this channel must be replaced, else None.

        Overdue confirms do not count while the broker blocks the connection: a channel
        cannot be closed then (the broker reads nothing), and the connection's own
        ``blocked_connection_timeout`` bounds that wait instead.
        """
        if self._lost is not None:
            return self._lost
        if not self.channel.is_open:
            return (CHANNEL_CLOSED, "channel closed")
        waited = self.confirms.oldest_unconfirmed_s()
        if not blocked and waited > confirm_timeout_s:
            return (CONFIRM_TIMEOUT, f"no publisher confirm for {waited:.0f}s")
        return None

    def close(self) -> None:
        """Close it ourselves (its unacked deliveries go back to the queue)."""
        self._closing = True
        if self.channel.is_open:
            with contextlib.suppress(Exception):  # the channel or connection may be dying
                self.frames.flush_acks()
                self.channel.close()

    def close_keeping_order(self, wait_s: float) -> None:
        """Close it so that every unacked delivery goes back to its queue in delivery order;
        wait up to ``wait_s`` for the broker's close-ok (pumping the connection: deliveries
        still dispatched to ``on_message`` then are the closed channel's, to be ignored).

        pika's ``BlockingChannel.close`` first nacks, one by one, the deliveries it received
        but has not dispatched yet; a quorum queue puts those back *ahead* of the dispatched
        ones the close returns (checked on 3.10), so a customer's later command would come
        back before its earlier ones. The underlying channel's close nacks nothing."""
        self._closing = True
        channel = self.channel
        if not channel.is_open:
            return
        self.frames.flush_acks()  # what was decided goes out before the close
        settled = time.monotonic() + SETTLE_S
        while time.monotonic() < settled:
            channel.connection.process_data_events(time_limit=CLOSE_POLL_S)
        with contextlib.suppress(Exception):  # the channel or connection may be dying
            self.frames.close()
        deadline = time.monotonic() + wait_s
        while not channel.is_closed and time.monotonic() < deadline:  # a lost connection raises
            channel.connection.process_data_events(time_limit=CLOSE_POLL_S)
