"""Moving dead letters back to the commands exchange, or removing them, without loss.

Replay runs one AMQP transaction per small batch on the channel that holds the messages:
publish the copies to the commands exchange, ack the dead-letter originals, commit. A
process killed before the commit changes nothing (the broker drops the uncommitted
publishes and returns the unacked originals); after it, both happened. Checked on
RabbitMQ 3.10 with quorum queues: an uncommitted publish + ack is rolled back when the
channel closes, and returned messages keep their order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pika
from pika.exceptions import AMQPChannelError

from worker.broker import headers as h
from worker.broker.topology import Topology
from worker.observability import tracing
from worker.ops.dlq_filter import Filters
from worker.ops.dlq_read import DeadLetter, Held, Progress, held_messages

REPLAY_BATCH_MESSAGES = 20  # messages per transaction: a kill redoes at most this many


@dataclass
class ReplaySummary:
    replayed: list[DeadLetter] = field(default_factory=list)
    skipped: int = 0
    failed: list[tuple[DeadLetter, str]] = field(default_factory=list)


def select(
    messages: Sequence[DeadLetter], filters: Filters, limit: int | None = None
) -> list[DeadLetter]:
    chosen = [m for m in messages if filters.matches(m)]
    return chosen if limit is None else chosen[:limit]


def replay_properties(message: DeadLetter) -> Any:
    """The original properties with replay headers: one more replay, a fresh retry budget."""
    original = message.properties
    return pika.BasicProperties(
        content_type=original.content_type,
        content_encoding=original.content_encoding,
        headers=h.for_replay(original.headers),
        delivery_mode=pika.DeliveryMode.Persistent,
        correlation_id=original.correlation_id,
        reply_to=original.reply_to,
        message_id=original.message_id,
        timestamp=original.timestamp,
        type=original.type,
        app_id=original.app_id,
    )


def ensure_route(connection: Any, topology: Topology) -> None:
    """The commands queue must exist and be bound, or a committed replay would vanish."""
    channel = connection.channel()
    try:
        channel.queue_declare(topology.commands_queue, passive=True)
        channel.queue_bind(topology.commands_queue, topology.commands_exchange, "#")
    finally:
        if channel.is_open:
            channel.close()


def replay(
    connection: Any,
    topology: Topology,
    filters: Filters,
    *,
    limit: int | None = None,
    progress: Progress | None = None,
    read_progress: Progress | None = None,
) -> ReplaySummary:
    ensure_route(connection, topology)
    summary = ReplaySummary()
    queue = topology.dead_letter_queue
    with held_messages(
        connection, queue, transactional=True, keep=filters.matches, progress=read_progress
    ) as held:
        chosen = select(held.messages, filters, limit)
        summary.skipped = held.read - len(chosen)
        for start in range(0, len(chosen), REPLAY_BATCH_MESSAGES):
            batch = chosen[start : start + REPLAY_BATCH_MESSAGES]
            try:
                _replay_batch(held, topology, batch, summary)
            except AMQPChannelError as exc:  # the channel is gone: nothing more can move
                reason = f"broker refused the replay: {type(exc).__name__}"
                summary.failed += [(m, reason) for m in chosen[start:]]
                break
            if progress is not None:
                progress(start + len(batch), len(chosen))
    return summary


def _replay_batch(
    held: Held, topology: Topology, batch: list[DeadLetter], summary: ReplaySummary
) -> None:
    exchange = topology.commands_exchange
    for message in batch:
        properties = replay_properties(message)
        routing_key = message.original_routing_key
        with tracing.producing(
            exchange,
            routing_key,
            properties.headers,
            message_id=message.message_id,
            correlation_id=properties.correlation_id,
            links_from=message.headers,  # the attempt that dead-lettered it
        ):
            held.channel.basic_publish(exchange, routing_key, message.body, properties)
        held.ack(message)
    held.channel.tx_commit()
    summary.replayed.extend(batch)


def purge(
    connection: Any,
    topology: Topology,
    filters: Filters,
    *,
    confirm: Callable[[list[DeadLetter]], bool],
) -> list[DeadLetter] | None:
    """Remove the matching messages once ``confirm(them)`` agrees; None when it refused."""
    with held_messages(connection, topology.dead_letter_queue, keep=filters.matches) as held:
        chosen = held.messages
        if not chosen or not confirm(chosen):
            return None if chosen else []
        for message in chosen:
            held.ack(message)
        # A round trip so every ack reached the broker before the channel closes.
        held.channel.basic_qos(prefetch_count=1)
    return chosen
