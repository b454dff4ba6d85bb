"""ConfirmTracker's bookkeeping without a broker: how long confirms are overdue, and which
groups a lost channel abandons (each counted once out of in_flight)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pika

from worker.broker.confirms import ConfirmGroup, ConfirmTracker


class AsyncChannel:
    """Stands in for pika's asynchronous channel: confirm mode at once, publishes recorded."""

    def __init__(self) -> None:
        self.published: list[str] = []
        self.on_confirm: Any = None

    def confirm_delivery(self, ack_nack_callback: Any, callback: Any) -> None:
        self.on_confirm = ack_nack_callback
        callback(None)

    def add_on_return_callback(self, _callback: Any) -> None:
        pass

    def basic_publish(self, exchange: str, routing_key: str, *_: Any, **__: Any) -> None:
        self.published.append(routing_key)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def tracker() -> tuple[ConfirmTracker, AsyncChannel, Clock]:
    impl, clock = AsyncChannel(), Clock()
    channel = SimpleNamespace(_impl=impl, is_open=True)
    connection = SimpleNamespace(call_later=lambda _delay, fn: fn())
    return ConfirmTracker(connection, channel, clock=clock), impl, clock


def ack(impl: AsyncChannel, tag: int) -> None:
    impl.on_confirm(SimpleNamespace(method=pika.spec.Basic.Ack(delivery_tag=tag)))


def test_the_oldest_unconfirmed_publish_tells_how_overdue_confirms_are() -> None:
    confirms, impl, clock = tracker()
    assert confirms.oldest_unconfirmed_s() == 0.0
    settled: list[ConfirmGroup] = []
    first = confirms.group(settled.append)
    confirms.publish(first, "events", "a", b"", None, True)
    confirms.seal(first)
    clock.now += 30
    second = confirms.group(settled.append)
    confirms.publish(second, "events", "b", b"", None, True)
    confirms.seal(second)
    clock.now += 31
    assert confirms.oldest_unconfirmed_s() == 61.0
    ack(impl, 1)
    assert confirms.oldest_unconfirmed_s() == 31.0
    assert settled == [first]


def test_a_discarded_group_never_settles_and_is_not_abandoned_twice() -> None:
    confirms, impl, _clock = tracker()
    settled: list[ConfirmGroup] = []
    kept, dropped = confirms.group(settled.append), confirms.group(settled.append)
    confirms.publish(kept, "events", "a", b"", None, True)
    confirms.seal(kept)
    confirms.publish(dropped, "events", "b", b"", None, True)
    confirms.discard(dropped)  # its command was settled another way
    assert confirms.abandon() == 1  # only the kept group was still owed an outcome
    ack(impl, 2)
    assert settled == []
