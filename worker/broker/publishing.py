"""Carrying out a Decision on the connection's thread: publish, schedule, dead-letter.

Every publish waits for the broker's confirm (the channel is in confirm mode), and the
consumer acks the command only after all of them: a crash in between must redeliver, not
lose.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pika
from pika.exceptions import UnroutableError

from worker.broker import headers as h
from worker.broker.topology import Topology
from worker.observability import tracing

log = logging.getLogger(__name__)

PERSISTENT = pika.DeliveryMode.Persistent
EVENT_CONTENT_TYPE = "application/json"


class EventUnroutableError(Exception):
    """No queue is bound for this event; the event stays in the store for replays."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def publish_result(
    channel: Any,
    topology: Topology,
    event: bytes,
    routing_key: str,
    correlation_id: str | None,
    reply_to: str | None,
) -> None:
    """Publish the terminal event to the events exchange, and to ``reply_to`` if asked.

    Raises ``EventUnroutableError`` after the reply copy is sent when no binding took the event.
    """
    props = pika.BasicProperties(
        content_type=EVENT_CONTENT_TYPE,
        delivery_mode=PERSISTENT,
        correlation_id=correlation_id,
        type=routing_key,
        headers=tracing.context_headers(),
    )
    unroutable = False
    try:
        channel.basic_publish(topology.events_exchange, routing_key, event, props, mandatory=True)
    except UnroutableError:
        unroutable = True
    if reply_to:
        # A caller's reply queue may be gone; that must not block the command's outcome.
        try:
            channel.basic_publish("", reply_to, event, props, mandatory=False)
        except UnroutableError:  # pragma: no cover - not mandatory, kept for safety
            log.warning("reply_to queue did not take the event")
    if unroutable:
        raise EventUnroutableError(routing_key)


# The broker's own bookkeeping of this delivery; a re-published copy starts afresh, or a
# delayed retry would look like a redelivery and creep towards the delivery limit.
NOT_CARRIED = h.BROKER_DEATH_HEADERS | {"x-delivery-count"}


def _carried_headers(properties: Any) -> dict[str, Any]:
    return {k: v for k, v in (properties.headers or {}).items() if k not in NOT_CARRIED}


def _copy_properties(properties: Any, headers: dict[str, Any]) -> Any:
    return pika.BasicProperties(
        content_type=properties.content_type,
        content_encoding=properties.content_encoding,
        headers=headers,
        delivery_mode=PERSISTENT,
        correlation_id=properties.correlation_id,
        reply_to=properties.reply_to,
        message_id=properties.message_id,
        timestamp=properties.timestamp,
        type=properties.type,
        app_id=properties.app_id,
    )


def schedule_retry(
    channel: Any,
    topology: Topology,
    body: bytes,
    properties: Any,
    routing_key: str,
    delay_s: float,
    last_error: str,
    *,
    count_attempt: bool = True,
) -> None:
    """Send the command to the delay tier; it dead-letters back to the commands exchange."""
    headers = _carried_headers(properties)
    headers[h.ATTEMPTS] = h.attempts_of(properties) + (1 if count_attempt else 0)
    headers.setdefault(h.ORIGINAL_ROUTING_KEY, routing_key)
    headers.setdefault(h.FIRST_FAILURE, now_iso())
    headers[h.LAST_ERROR] = last_error[:500]
    tracing.mark_attempt(headers)
    channel.basic_publish(
        topology.retry_exchange,
        topology.tier_label(delay_s),
        body,
        _copy_properties(properties, headers),
        mandatory=True,
    )


def dead_letter(
    channel: Any,
    topology: Topology,
    body: bytes,
    properties: Any,
    routing_key: str,
    *,
    reason: str,
    error_code: str,
    last_error: str,
) -> None:
    """Park the original body and properties in the dead-letter queue, with the reason."""
    headers = _carried_headers(properties)
    original_key = str(headers.get(h.ORIGINAL_ROUTING_KEY) or routing_key)
    now = now_iso()
    headers.update(
        h.dead_letter_headers(
            reason=reason,
            error_code=error_code,
            last_error=last_error[:500],
            attempts=h.attempts_of(properties) + 1,
            first_failure=str(headers.get(h.FIRST_FAILURE) or now),
            last_failure=now,
            original_routing_key=original_key,
        )
    )
    tracing.mark_attempt(headers)
    channel.basic_publish(
        topology.dead_letter_exchange,
        original_key,
        body,
        _copy_properties(properties, headers),
        mandatory=True,
    )
