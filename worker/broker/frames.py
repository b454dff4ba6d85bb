"""The one place that reaches under pika's ``BlockingChannel`` (``channel._impl``), and why.

pika 1.4's ``BlockingChannel`` flushes the socket on every ``basic_ack``/``basic_nack``, and
in confirm mode its ``basic_publish`` waits for each message's confirm: the connection's
thread, which publishes every event and acks every command, would wait a whole round trip
per message (that alone capped the worker at ~1/RTT commands a second). Its public API has
no way to queue frames for the next turn of the loop, no confirm mode with an ack/nack
callback, no channel-close callback with the broker's reason, and no close that leaves the
deliveries it holds undispatched in place (it nacks them first). The asynchronous channel
underneath has all four; this adapter is the only code that touches it, so a pika upgrade
that changes it breaks one file, and everything else uses ``BlockingChannel`` as documented.

Everything here runs on the connection's thread; frames leave when the loop next polls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from worker.broker.acks import AckBatch


class ChannelFrames:
    """Non-waiting operations on one ``BlockingChannel``. With ``batch_acks``, single acks
    wait for ``flush_acks`` at the end of the loop's turn (``worker.broker.acks``), and the
    consumer registers each delivery it dispatches with ``delivered``."""

    def __init__(self, channel: Any, *, batch_acks: bool = False) -> None:
        self._impl = channel._impl  # the asynchronous pika.channel.Channel (see above)
        self._batch = AckBatch(self._send_ack) if batch_acks else None

    def delivered(self, delivery_tag: int) -> None:
        if self._batch is not None:
            self._batch.delivered(delivery_tag)

    def ack(self, delivery_tag: int, *, multiple: bool = False) -> None:
        if self._batch is not None and not multiple:
            self._batch.ack(delivery_tag)
            return
        self._impl.basic_ack(delivery_tag, multiple=multiple)

    def flush_acks(self) -> None:
        if self._batch is not None:
            self._batch.flush()

    def _send_ack(self, delivery_tag: int, multiple: bool) -> None:
        self._impl.basic_ack(delivery_tag, multiple=multiple)

    def nack(self, delivery_tag: int, *, requeue: bool) -> None:
        if self._batch is not None:
            self._batch.settled(delivery_tag)
        self._impl.basic_nack(delivery_tag, requeue=requeue)

    def publish(
        self, exchange: str, routing_key: str, body: bytes, properties: Any, *, mandatory: bool
    ) -> None:
        self._impl.basic_publish(exchange, routing_key, body, properties, mandatory=mandatory)

    def enable_confirms(
        self, on_confirm: Callable[[Any], None], on_selected: Callable[[Any], None]
    ) -> None:
        """Confirm mode: ``on_confirm(frame)`` for each Basic.Ack/Nack, no waiting per publish."""
        self._impl.confirm_delivery(ack_nack_callback=on_confirm, callback=on_selected)

    def close(self) -> None:
        """Close the channel without nacking what pika received but has not dispatched
        (``BlockingChannel.close`` nacks those first, and a quorum queue then returns them
        ahead of the dispatched ones: see ``ConsumingChannel.close_keeping_order``)."""
        self._impl.close()

    def on_return(self, callback: Callable[[Any, Any, Any, bytes], None]) -> None:
        self._impl.add_on_return_callback(callback)

    def on_close(self, callback: Callable[[Exception], None]) -> None:
        """``callback(reason)`` when the channel closes: the broker's reply code and text."""
        self._impl.add_on_close_callback(lambda _channel, reason: callback(reason))
