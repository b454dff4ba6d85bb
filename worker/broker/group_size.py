"""Declaring a quorum queue that may have been created with another initial group size.

``x-quorum-initial-group-size`` only matters when a queue is created, yet RabbitMQ compares
it on every redeclare and refuses a difference (406 PRECONDITION_FAILED, which closes the
channel): a queue declared before the setting existed, or under another value, would stop
every worker that starts with the new one. ``declare_queue`` therefore reads the value the
queue has from the refusal ("... but current is none" / "... current is the value '3'")
and declares it again, on a fresh channel, with that value instead: every other argument is
still compared, so a real difference fails as before. Changing the members of an existing
queue is ``rabbitmq-queues grow`` / ``shrink`` (``topology --check`` reports the ones short
of a member).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from pika.exceptions import ChannelClosedByBroker

log = logging.getLogger(__name__)

GROUP_SIZE_ARG = "x-quorum-initial-group-size"
PRECONDITION_FAILED = 406
# RabbitMQ 3.10's words for an inequivalent argument, the queue's own value last.
_CURRENT_RE = re.compile(
    r"inequivalent arg '" + re.escape(GROUP_SIZE_ARG) + r"'.*current is (?:the value )?"
    r"(none|'(\d+)')"
)


def existing_arguments(arguments: dict[str, Any], refusal: ChannelClosedByBroker) -> Any:
    """``arguments`` with the group size the existing queue has, when ``refusal`` is about
    that argument alone; None otherwise (another difference, or words not understood)."""
    if refusal.reply_code != PRECONDITION_FAILED:
        return None
    found = _CURRENT_RE.search(str(refusal.reply_text))
    if found is None:
        return None
    kept = {k: v for k, v in arguments.items() if k != GROUP_SIZE_ARG}
    if found.group(2) is not None:
        kept[GROUP_SIZE_ARG] = int(found.group(2))
    return kept


def declare_queue(channel: Any, name: str, arguments: dict[str, Any]) -> tuple[Any, Any]:
    """Declare the durable queue; on a refusal over the group size alone, again on a new
    channel of the same connection with the queue's own value. Returns the channel that is
    open afterwards (the given one unless it was closed by the refusal) and the arguments
    the queue was declared with."""
    try:
        channel.queue_declare(name, durable=True, arguments=arguments)
        return channel, arguments
    except ChannelClosedByBroker as exc:
        kept = existing_arguments(arguments, exc)
        if kept is None:
            raise
    log.info(
        "queue %s keeps the quorum group size it was created with (%s); the configured %s "
        "applies to new queues",
        name,
        kept.get(GROUP_SIZE_ARG, "the broker's default"),
        arguments.get(GROUP_SIZE_ARG, "the broker's default"),
    )
    channel = channel.connection.channel()
    channel.queue_declare(name, durable=True, arguments=kept)
    return channel, kept
