"""Publishing one command as an operator would, and waiting for its event on ``reply_to``.

The body goes out exactly as given (it carries the secrets the worker needs); only its
message id, and the event that answers it, are ever printed.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pika

from worker.broker.topology import Topology
from worker.observability import tracing

CONTENT_TYPE = "application/json"
PUMP_S = 0.1
FAILURE_EVENTS = frozenset({"CommandFailed", "CommandRejected"})


@dataclass(frozen=True)
class Published:
    message_id: str
    correlation_id: str
    routing_key: str
    reply_queue: str | None


def publish_command(
    channel: Any,
    topology: Topology,
    body: bytes,
    routing_key: str,
    *,
    correlation_id: str | None = None,
    wait_for_reply: bool = False,
) -> Published:
    """Publish with a confirm (``mandatory``: unroutable raises ``UnroutableError``).

    With ``wait_for_reply`` an exclusive auto-delete queue is declared first and named in
    ``reply_to``, so the event cannot arrive before anyone listens.
    """
    message_id = str(uuid.uuid4())
    correlation_id = correlation_id or message_id
    reply_queue = None
    if wait_for_reply:
        declared = channel.queue_declare("", exclusive=True, auto_delete=True)
        reply_queue = str(declared.method.queue)
    channel.confirm_delivery()
    headers: dict[str, Any] = {}
    properties = pika.BasicProperties(
        content_type=CONTENT_TYPE,
        delivery_mode=pika.DeliveryMode.Persistent,
        message_id=message_id,
        correlation_id=correlation_id,
        reply_to=reply_queue,
        timestamp=int(time.time()),
        headers=headers,
    )
    exchange = topology.commands_exchange
    with tracing.producing(
        exchange, routing_key, headers, message_id=message_id, correlation_id=correlation_id
    ):
        channel.basic_publish(exchange, routing_key, body, properties, mandatory=True)
    return Published(message_id, correlation_id, routing_key, reply_queue)


def await_event(
    connection: Any, channel: Any, published: Published, timeout_s: float
) -> bytes | None:
    """The first event on the reply queue with our correlation id; None after ``timeout_s``."""
    assert published.reply_queue is not None, "publish_command(..., wait_for_reply=True) first"
    found: list[bytes] = []

    def on_reply(_ch: Any, method: Any, properties: Any, body: bytes) -> None:
        _ch.basic_ack(method.delivery_tag)
        if properties.correlation_id == published.correlation_id and not found:
            found.append(body)

    channel.basic_consume(published.reply_queue, on_reply, auto_ack=False)
    deadline = time.monotonic() + timeout_s
    while not found and time.monotonic() < deadline:
        connection.process_data_events(
            time_limit=max(0.0, min(PUMP_S, deadline - time.monotonic()))
        )
    return found[0] if found else None


def is_failure(event: bytes) -> bool:
    """A ``CommandFailed``/``CommandRejected`` event (or one that is not even JSON)."""
    try:
        decoded = json.loads(event)
    except ValueError:
        return True
    return not isinstance(decoded, dict) or decoded.get("type") in FAILURE_EVENTS
