"""Carrying out a Decision on the connection's thread: publish, schedule, dead-letter.

Every publish waits for the broker's confirm (the channel is in confirm mode), and the
consumer acks the command only after all of them: a crash in between must redeliver, not
lose.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pika
from pika.exceptions import AMQPError

from worker.broker import headers as h
from worker.broker.confirms import ConfirmGroup, ConfirmTracker
from worker.broker.topology import Topology
from worker.decision import DeadLetter, Decision
from worker.observability import tracing

PERSISTENT = pika.DeliveryMode.Persistent
EVENT_CONTENT_TYPE = "application/json"


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

    ``channel`` is a confirm group: an event no binding took comes back through the group's
    returns (``mandatory``), not as an exception here."""
    props = pika.BasicProperties(
        content_type=EVENT_CONTENT_TYPE,
        delivery_mode=PERSISTENT,
        correlation_id=correlation_id,
        type=routing_key,
        headers=tracing.context_headers(),
    )
    channel.basic_publish(topology.events_exchange, routing_key, event, props, mandatory=True)
    if reply_to:
        # Not mandatory: a caller's reply queue may be gone; that must not block the outcome.
        channel.basic_publish("", reply_to, event, props, mandatory=False)


# The broker's own bookkeeping of this delivery; a re-published copy starts afresh, or a
# delayed retry would look like a redelivery and creep towards the delivery limit.
NOT_CARRIED = h.BROKER_DEATH_HEADERS


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
    headers[h.ORIGINAL_ROUTING_KEY] = h.original_routing_key(properties, routing_key)
    headers[h.FIRST_FAILURE] = h.first_failure_of(properties) or now_iso()
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
    original_key = h.original_routing_key(properties, routing_key)
    now = now_iso()
    headers.update(
        h.dead_letter_headers(
            reason=reason,
            error_code=error_code,
            last_error=last_error[:500],
            attempts=h.attempts_of(properties) + 1,
            first_failure=h.first_failure_of(properties) or now,
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


def carry_out(
    publisher: Any,
    topology: Topology,
    body: bytes,
    properties: Any,
    routing_key: str,
    decision: Decision,
) -> None:
    """Every publish ``decision`` needs for the delivery (``body``, ``properties``,
    ``routing_key``): a delay-tier copy, or the event and the dead-letter copy."""
    if decision.retry_in_s is not None:
        schedule_retry(
            publisher,
            topology,
            body,
            properties,
            routing_key,
            decision.retry_in_s,
            decision.last_error or "",
            count_attempt=decision.count_attempt,
        )
        return
    if decision.event is not None:
        assert decision.routing_key is not None
        publish_result(
            publisher,
            topology,
            decision.event,
            decision.routing_key,
            properties.correlation_id or properties.message_id,
            properties.reply_to,
        )
    if decision.dead_letter is not None:
        _park_copy(publisher, topology, body, properties, routing_key, decision.dead_letter)


def _park_copy(
    publisher: Any,
    topology: Topology,
    body: bytes,
    properties: Any,
    routing_key: str,
    parked: DeadLetter,
) -> None:
    """The dead-letter copy a failed or rejected decision asks for."""
    dead_letter(
        publisher,
        topology,
        body,
        properties,
        routing_key,
        reason=parked.reason,
        error_code=parked.error_code,
        last_error=parked.last_error,
    )


def carry_out_confirmed(
    confirms: ConfirmTracker,
    topology: Topology,
    body: bytes,
    properties: Any,
    routing_key: str,
    decision: Decision,
    on_confirmed: Callable[[ConfirmGroup], None],
) -> Exception | None:
    """``carry_out`` as one confirm group: ``on_confirmed(group)`` once the broker confirmed
    (or refused) all of it. A lost broker raises; any other error (a value pika cannot
    encode) discards the group and is returned, for the caller to settle the message."""
    group = confirms.group(on_confirmed)
    try:
        carry_out(confirms.publisher(group), topology, body, properties, routing_key, decision)
    except AMQPError:
        raise
    except Exception as exc:
        confirms.discard(group)
        return exc
    confirms.seal(group)
    return None
