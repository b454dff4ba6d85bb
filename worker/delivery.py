"""One delivery as the consumer received it, and the ``Envelope`` read from it.

Reading runs on the connection's thread, so nothing here may raise for anything a publisher
sent: headers are read defensively (``worker.broker.headers``) and a body over the limit or
not a valid command becomes an ``InvalidCommand`` in the envelope.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from contracts import InvalidCommand, decode_command
from worker.broker import headers as h
from worker.decision import Envelope
from worker.observability import tracing

# Before the digest of an invalid command: publishers' idempotency keys hold no control
# character, so a rejection's record never takes the key of a command.
REJECTION_KEY_PREFIX = "\x1frejected:"


@dataclass(frozen=True)
class Delivery:
    channel: Any
    delivery_tag: int
    routing_key: str
    properties: Any
    body: bytes
    started_at: float
    redelivered: bool = False
    trace: Any = tracing.UNTRACED  # the command's span (worker.observability.tracing)


@dataclass(frozen=True)
class Reading:
    envelope: Envelope
    ignored_headers: tuple[str, ...]  # present with a wrong type or size: read as absent


def read_delivery(delivery: Delivery, max_body_bytes: int) -> Reading:
    props = delivery.properties
    read = h.read_delivery_headers(props, delivery.redelivered)
    correlation_id = props.correlation_id or props.message_id
    attempts, count = read.attempts, read.delivery_count
    try:
        command = decode_command(delivery.body, max_bytes=max_body_bytes)
    except InvalidCommand as exc:
        key = rejection_key(delivery.body, correlation_id)
        return Reading(Envelope(None, exc, correlation_id, attempts, count, key), read.ignored)
    return Reading(Envelope(command, None, correlation_id, attempts, count), read.ignored)


def rejection_key(body: bytes, correlation_id: str | None) -> str:
    """Where an invalid command's rejection is recorded: a redelivery of the same message
    (same body, same correlation id) finds it and publishes the same event again."""
    identity = str(correlation_id or "").encode("utf-8", "replace")
    digest = hashlib.sha256(identity + b"\0" + body).hexdigest()
    return REJECTION_KEY_PREFIX + digest
