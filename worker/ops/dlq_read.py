"""Reading the dead-letter queue without consuming it, and describing each message safely.

Messages are consumed with manual acks and a prefetch as large as the queue, then left
unacked: when the channel closes the broker puts them back, in their order. Both kinds of
dead letter are understood: the worker's (``x-provisioner-*`` headers, see
``worker.broker.headers``) and the broker's own (``x-death``, e.g. over the delivery limit).
Bodies are shown only through ``worker.ops.dlq.redacted_body``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from worker.broker import headers as h
from worker.observability.redact import redact_text
from worker.ops.dlq_cause import group_id, mask_error

MAX_PREFETCH = 65535  # AMQP's prefetch-count is a 16-bit field
READ_IDLE_TIMEOUT_S = 5.0  # give up waiting for the rest when the broker sends nothing
PUMP_S = 0.05
RETURN_SETTLE_TIMEOUT_S = 5.0  # then someone else consumed them: stop waiting
PROGRESS_FROM_MESSAGES = 1000  # smaller queues are read before anyone would wonder

Keep = Callable[["DeadLetter"], bool]  # whether to hold a message in memory after reading it
Progress = Callable[[int, int], None]  # (read, total)


@dataclass(frozen=True)
class DeadLetter:
    """One message of the dead-letter queue, as an operator sees it."""

    position: int  # 1-based place in the queue when it was read
    delivery_tag: int
    routing_key: str
    properties: Any
    body: bytes
    command: Mapping[str, Any] | None  # the decoded JSON object, None when not one

    @property
    def headers(self) -> Mapping[str, Any]:
        return self.properties.headers or {}

    @property
    def message_id(self) -> str | None:
        return self.properties.message_id  # type: ignore[no-any-return]

    def _field(self, name: str) -> str | None:
        value = self.command.get(name) if self.command else None
        return value if isinstance(value, str) else None

    @property
    def command_type(self) -> str | None:
        return self._field("type")

    @property
    def idempotency_key(self) -> str | None:
        return self._field("idempotency_key")

    @property
    def customer(self) -> str | None:
        if self.command_type in ("CreateCustomer", "ListCustomers"):
            return self._field("username")
        return self._field("customer")

    @property
    def _death(self) -> Mapping[str, Any]:
        deaths = self.headers.get(h.X_DEATH)  # the broker's list of tables, unless forged
        if isinstance(deaths, list) and deaths and isinstance(deaths[0], Mapping):
            return deaths[0]
        return {}

    @property
    def reason(self) -> str:
        return _text(self.headers.get(h.REASON)) or _text(self._death.get("reason")) or "unknown"

    @property
    def error_code(self) -> str:
        code = _text(self.headers.get(h.ERROR_CODE))
        if code:
            return code
        return "delivery_limit" if self.reason == "delivery_limit" else ""

    @property
    def last_error(self) -> str:
        return redact_text(_text(self.headers.get(h.LAST_ERROR)) or "")

    @property
    def attempts(self) -> int:
        return h.attempts_of(self.properties)

    @property
    def replays(self) -> int:
        return h.replays_of(self.properties)

    @property
    def last_failure(self) -> datetime | None:
        return moment_of(self.headers.get(h.LAST_FAILURE)) or moment_of(self._death.get("time"))

    @property
    def first_failure(self) -> datetime | None:
        return moment_of(self.headers.get(h.FIRST_FAILURE)) or self.last_failure

    @property
    def original_routing_key(self) -> str:
        """Where a replay sends it: the recorded key, else the command type, else as received."""
        recorded = h.routing_key_text(self.headers.get(h.ORIGINAL_ROUTING_KEY))
        return recorded or h.routing_key_text(self.command_type) or self.routing_key

    @property
    def masked_error(self) -> str:
        return mask_error(self.last_error)

    @property
    def group_id(self) -> str:
        """The id of its group in `dlq groups` (``worker.ops.dlq_cause``)."""
        return group_id(self.command_type or "", self.reason, self.error_code, self.masked_error)

    def summary(self) -> dict[str, Any]:
        """The listing row (no body: nothing secret)."""
        return {
            "position": self.position,
            "message_id": self.message_id,
            "command_type": self.command_type,
            "customer": self.customer,
            "idempotency_key": self.idempotency_key,
            "reason": self.reason,
            "error_code": self.error_code,
            "last_error": self.last_error,
            "attempts": self.attempts,
            "replays": self.replays,
            "first_failure": _iso(self.first_failure),
            "last_failure": _iso(self.last_failure),
            "routing_key": self.original_routing_key,
            "group": self.group_id,
        }


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value if isinstance(value, str) and value else None


def moment_of(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = _text(value)
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _iso(moment: datetime | None) -> str | None:
    return h.iso_utc(moment) if moment else None


def decode_object(body: bytes) -> Mapping[str, Any] | None:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def queue_depth(connection: Any, queue: str) -> int:
    channel = connection.channel()
    try:
        return int(channel.queue_declare(queue, passive=True).method.message_count)
    finally:
        channel.close()


@dataclass
class Held:
    """Messages held unacked on ``channel``; ``ack`` removes one from the queue.

    ``messages`` are those the reader chose to keep; ``read`` counts every message read
    (the others stay unacked too, but only the broker remembers them).
    """

    channel: Any
    messages: list[DeadLetter]
    read: int = 0
    removed: int = 0

    def ack(self, message: DeadLetter) -> None:
        self.channel.basic_ack(message.delivery_tag)
        self.removed += 1


@contextmanager
def held_messages(
    connection: Any,
    queue: str,
    *,
    transactional: bool = False,
    keep: Keep | None = None,
    progress: Progress | None = None,
) -> Iterator[Held]:
    """Every ready message of ``queue``, held unacked on a dedicated channel.

    What the caller does not ack goes back, in order, when the channel closes on leaving
    the block; a quorum queue takes them back asynchronously, so leaving waits (briefly)
    until they are visible again, and the next command sees the whole queue.
    ``transactional`` puts the channel in transaction mode so acks commit with publishes.
    Memory stays bounded on a long queue: pika hands over deliveries a socket read at a time,
    and only the messages ``keep`` accepts (all when None) stay referenced. ``progress`` is
    told (read, total) as reading goes, on queues of ``PROGRESS_FROM_MESSAGES`` or more.
    """
    depth = queue_depth(connection, queue)
    channel = connection.channel()
    held = Held(channel, [])
    try:
        if transactional:
            channel.tx_select()
        report = progress if depth >= PROGRESS_FROM_MESSAGES else None
        _collect(connection, held, queue, depth, keep or _keep_all, report)
        yield held
    finally:
        if channel.is_open:
            channel.close()
    _wait_returned(connection, queue, depth - held.removed)


def _keep_all(_: DeadLetter) -> bool:
    return True


def _wait_returned(connection: Any, queue: str, expected: int) -> None:
    deadline = time.monotonic() + RETURN_SETTLE_TIMEOUT_S
    while queue_depth(connection, queue) < expected and time.monotonic() < deadline:
        connection.sleep(PUMP_S)


def _collect(
    connection: Any, held: Held, queue: str, depth: int, keep: Keep, progress: Progress | None
) -> None:
    wanted = min(depth, MAX_PREFETCH)
    if wanted == 0:
        return

    def on_message(_ch: Any, method: Any, properties: Any, body: bytes) -> None:
        if held.read >= wanted:
            return  # past the depth read at the start: left unacked, it goes back
        held.read += 1
        message = DeadLetter(
            position=held.read,
            delivery_tag=method.delivery_tag,
            routing_key=method.routing_key,
            properties=properties,
            body=body,
            command=decode_object(body),
        )
        if keep(message):
            held.messages.append(message)
        if progress is not None:
            progress(held.read, wanted)

    channel = held.channel
    channel.basic_qos(prefetch_count=wanted)
    tag = channel.basic_consume(queue, on_message, auto_ack=False)
    last_progress = time.monotonic()
    while held.read < wanted:
        seen = held.read
        connection.process_data_events(time_limit=PUMP_S)
        if held.read > seen:
            last_progress = time.monotonic()
        elif time.monotonic() - last_progress > READ_IDLE_TIMEOUT_S:
            break  # another consumer took some: list what we have
    channel.basic_cancel(tag)
