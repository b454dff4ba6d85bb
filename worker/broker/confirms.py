"""Publisher confirms without a broker round trip per message.

``BlockingChannel.basic_publish`` in confirm mode waits for each message's ``Basic.Ack``
before it returns: the connection's thread, which publishes every event, then does nothing
else for a whole round trip, and that alone capped the worker at ~1/RTT commands a second.
Here the channel's confirm mode is switched on underneath the blocking adapter: publishes
return at once, the broker's acks (often ``multiple``) and returns are tracked per publish,
and a *group* (all publishes one command's outcome needs) is settled when every one of its
publishes is confirmed. Only then does the consumer ack the command, so a crash before the
confirm still redelivers it.

Everything here runs on the connection's thread: publishes from the consumer's callbacks,
acks and returns from inside ``process_data_events``. The asynchronous channel is reached
only through ``worker.broker.frames``.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pika

from worker.broker.frames import ChannelFrames

log = logging.getLogger(__name__)

SELECT_OK_TIMEOUT_S = 30.0
SELECT_OK_POLL_S = 0.05


@dataclass
class Published:
    exchange: str
    routing_key: str
    body: bytes
    mandatory: bool
    published_at: float = 0.0  # monotonic
    returned: bool = False


@dataclass
class ConfirmGroup:
    """The publishes of one command's outcome; ``on_settled`` runs once all are confirmed."""

    on_settled: Callable[[ConfirmGroup], None]
    publishes: list[Published] = field(default_factory=list)
    unconfirmed: int = 0
    nacked: bool = False
    sealed: bool = False
    discarded: bool = False  # its command was settled otherwise: never calls on_settled

    def returned_exchanges(self) -> set[str]:
        return {p.exchange for p in self.publishes if p.returned}

    def refused(self, events_exchange: str) -> bool:
        """Nacked, or returned from anywhere but the events exchange (an event nobody
        subscribed to stays in the store for a replay: not a refusal)."""
        return self.nacked or bool(self.returned_exchanges() - {events_exchange})


class GroupPublisher:
    """What ``worker.broker.publishing`` publishes through: a channel-like ``basic_publish``
    that records each message in the group instead of waiting for its confirm."""

    def __init__(self, tracker: ConfirmTracker, group: ConfirmGroup) -> None:
        self._tracker, self._group = tracker, group

    def basic_publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: Any = None,
        mandatory: bool = False,
    ) -> None:
        self._tracker.publish(self._group, exchange, routing_key, body, properties, mandatory)


class ConfirmTracker:
    """Confirm mode on ``channel`` (a ``BlockingChannel``), tracked without blocking."""

    def __init__(
        self, connection: Any, channel: Any, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._connection = connection
        self._channel = channel
        self._frames = ChannelFrames(channel)
        self._clock = clock
        self._next_seq = 1
        self._pending: OrderedDict[int, tuple[ConfirmGroup, Published]] = OrderedDict()
        self._settled: deque[ConfirmGroup] = deque()
        self._settle_scheduled = False
        self._enable()

    def _enable(self) -> None:
        selected: list[bool] = []
        self._frames.enable_confirms(self._on_confirm, lambda _frame: selected.append(True))
        self._frames.on_return(self._on_return)
        waited_s = 0.0
        while not selected:
            if waited_s >= SELECT_OK_TIMEOUT_S or not self._channel.is_open:
                raise pika.exceptions.ChannelClosed(0, "confirm mode was not enabled")
            self._connection.process_data_events(time_limit=SELECT_OK_POLL_S)
            waited_s += SELECT_OK_POLL_S

    def group(self, on_settled: Callable[[ConfirmGroup], None]) -> ConfirmGroup:
        return ConfirmGroup(on_settled)

    def publisher(self, group: ConfirmGroup) -> GroupPublisher:
        return GroupPublisher(self, group)

    def publish(
        self,
        group: ConfirmGroup,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: Any,
        mandatory: bool,
    ) -> None:
        record = Published(exchange, routing_key, body, mandatory, self._clock())
        # The broker numbers confirms by publish order on the channel, from 1.
        self._pending[self._next_seq] = (group, record)
        self._next_seq += 1
        group.publishes.append(record)
        group.unconfirmed += 1
        # On the asynchronous channel: the frames wait in pika's buffer and leave with the
        # others of this turn of the loop (the blocking adapter would poll and send each on
        # its own, and every syscall hands the GIL to a pool thread and waits to get it back).
        self._frames.publish(exchange, routing_key, body, properties, mandatory=mandatory)

    def seal(self, group: ConfirmGroup) -> None:
        """No more publishes for ``group``; settles at once if it published nothing."""
        group.sealed = True
        if group.unconfirmed == 0:
            self._settled.append(group)
            self._schedule_settle()

    def discard(self, group: ConfirmGroup) -> None:
        """Its command was settled another way (a publish failed half-way): its confirms,
        if any arrive, are ignored and ``abandon`` does not count it."""
        group.discarded = True

    def pending(self) -> int:
        """Publishes the broker has not confirmed yet."""
        return len(self._pending)

    def oldest_unconfirmed_s(self) -> float:
        """How long the oldest publish still waiting for its confirm has waited (0 if none)."""
        for _group, record in self._pending.values():
            return max(0.0, self._clock() - record.published_at)
        return 0.0

    def abandon(self) -> int:
        """The channel is gone: forget every unsettled group (the broker will redeliver
        their commands); returns how many there were."""
        groups = {id(group) for group, _ in self._pending.values() if not group.discarded}
        groups.update(id(group) for group in self._settled if not group.discarded)
        self._pending.clear()
        self._settled.clear()
        return len(groups)

    # -- broker frames (inside process_data_events) ------------------------------------

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        nacked = isinstance(method, pika.spec.Basic.Nack)
        tags = self._confirmed_tags(int(method.delivery_tag), bool(method.multiple))
        for tag in tags:
            group, _record = self._pending.pop(tag)
            group.nacked = group.nacked or nacked
            group.unconfirmed -= 1
            if group.unconfirmed == 0 and group.sealed and not group.discarded:
                self._settled.append(group)
        # Settling acks commands, which must not run inside pika's frame dispatch.
        self._schedule_settle()

    def _confirmed_tags(self, tag: int, multiple: bool) -> list[int]:
        if not multiple:
            return [tag] if tag in self._pending else []
        tags = []
        for pending_tag in self._pending:
            if pending_tag > tag:
                break
            tags.append(pending_tag)
        return tags

    def _on_return(self, _channel: Any, method: Any, _properties: Any, body: bytes) -> None:
        # A return precedes its message's ack; the oldest unconfirmed match is the one.
        for _group, record in self._pending.values():
            if (
                not record.returned
                and record.mandatory
                and record.exchange == method.exchange
                and record.routing_key == method.routing_key
                and record.body == body
            ):
                record.returned = True
                return
        log.warning("a returned message matched no pending publish")

    def _schedule_settle(self) -> None:
        if self._settled and not self._settle_scheduled:
            self._settle_scheduled = True
            self._connection.call_later(0, self._settle)

    def _settle(self) -> None:
        self._settle_scheduled = False
        # One at a time: if an ack fails because the connection just died, the groups not
        # yet settled stay here for ``abandon`` to count.
        while self._settled:
            group = self._settled.popleft()
            group.on_settled(group)
