"""The AMQP headers the worker owns, and small pure helpers to read and rewrite them.

Delayed retries count in ``ATTEMPTS``; a dead-lettered message also carries why it was
parked (``REASON``, ``ERROR_CODE``, ``LAST_ERROR``) and when (``FIRST_FAILURE``,
``LAST_FAILURE``). The broker adds its own ``x-death`` headers when it dead-letters a
message itself (delivery limit, TTL tiers): those are dropped on replay.

Any publisher can set any header, so every reader here is defensive: a value of the wrong
type or size reads as absent (``read_delivery_headers`` names it, for a metric), never as
an exception on the connection's thread. ``x-delivery-count`` is trusted only on a
redelivery, the one place the broker sets it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from contracts.rules import IDEMPOTENCY_KEY_MAX_LENGTH

ATTEMPTS = "x-provisioner-attempts"
REPLAYS = "x-provisioner-replays"
ORIGINAL_ROUTING_KEY = "x-provisioner-original-routing-key"
REASON = "x-provisioner-reason"
ERROR_CODE = "x-provisioner-error-code"
LAST_ERROR = "x-provisioner-last-error"
DEAD_LETTER_ATTEMPTS = ATTEMPTS  # one counter: the attempts made when it was parked
FIRST_FAILURE = "x-provisioner-first-failure"
# Set by the sequencer on a partition's copy (docs/ordering.md): the customer's ordering key,
# and that the intake delivery was itself redelivered (the partition may hold it twice).
ORDER_KEY = "x-provisioner-order-key"
RESEQUENCED = "x-provisioner-resequenced"
# Set by the sequencer: the idempotency key of the command routed before this one with the
# same ordering key ("predecessor chains" in docs/ordering.md).
AFTER = "x-provisioner-after"
LAST_FAILURE = "x-provisioner-last-failure"

# Set by the broker when it redelivers or dead-letters a message (RabbitMQ's own names).
X_DEATH = "x-death"
DELIVERY_COUNT = "x-delivery-count"
BROKER_DEATH_HEADERS = frozenset(
    {
        X_DEATH,
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-last-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
        DELIVERY_COUNT,  # a quorum queue's redelivery count: a replay starts afresh
    }
)
DEAD_LETTER_HEADERS = frozenset({REASON, ERROR_CODE, LAST_ERROR, FIRST_FAILURE, LAST_FAILURE})

# Far above any real count (the delivery limit, the retry tiers, replays by hand), far below
# anything that would overflow a 64-bit AMQP integer when incremented and published again.
MAX_COUNT = 1_000_000
ROUTING_KEY_MAX_BYTES = 255  # an AMQP short string
TIME_TEXT_MAX_LENGTH = 64  # an ISO-8601 time with an offset is 29 characters


def _count(value: Any) -> int | None:
    """A header counter: a whole number 0..MAX_COUNT (decimal text as we once wrote it), or
    None for anything else (bool, float, a list, an endless digit string...)."""
    if isinstance(value, bytes) and len(value) <= len(str(MAX_COUNT)):
        value = value.decode("ascii", "replace")
    if isinstance(value, str) and len(value) <= len(str(MAX_COUNT)) and value.isdecimal():
        value = int(value)
    # pika reads the broker's 64-bit integers (x-delivery-count) as ``long``, a subclass of int.
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT:
        return int(value)
    return None


def _as_int(value: Any) -> int:
    return _count(value) or 0


def _headers(properties: Any) -> Mapping[str, Any]:
    headers = getattr(properties, "headers", None)
    return headers if isinstance(headers, Mapping) else {}


def attempts_of(properties: Any) -> int:
    """Delayed retries made so far (0 for a fresh command or a garbled header)."""
    return _as_int(_headers(properties).get(ATTEMPTS))


def replays_of(properties: Any) -> int:
    """How many times an operator replayed this message from the dead-letter queue."""
    return _as_int(_headers(properties).get(REPLAYS))


def routing_key_text(value: Any) -> str | None:
    """A header value usable as a routing key (text of at most 255 UTF-8 bytes), else None."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str) or not value:
        return None
    return value if len(value.encode("utf-8", "replace")) <= ROUTING_KEY_MAX_BYTES else None


def original_routing_key(properties: Any, fallback: str) -> str:
    """The routing key recorded at the first retry, or ``fallback`` (the delivery's own)."""
    return routing_key_text(_headers(properties).get(ORIGINAL_ROUTING_KEY)) or fallback


def predecessor_of(properties: Any) -> str | None:
    """The predecessor the sequencer named (``AFTER``), or None when absent or not an
    idempotency key (text of 1..IDEMPOTENCY_KEY_MAX_LENGTH characters)."""
    value = _headers(properties).get(AFTER)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str) and 0 < len(value) <= IDEMPOTENCY_KEY_MAX_LENGTH:
        return value
    return None


def _time_header(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value if isinstance(value, str) and 0 < len(value) <= TIME_TEXT_MAX_LENGTH else None


def first_failure_of(properties: Any) -> str | None:
    return _time_header(_headers(properties).get(FIRST_FAILURE))


@dataclass(frozen=True)
class DeliveryHeaders:
    """What the consumer reads from a delivery's headers, and which ones it ignored."""

    attempts: int = 0  # delayed retries so far
    delivery_count: int = 0  # redeliveries by the broker
    ignored: tuple[str, ...] = ()  # headers present with a wrong type or size


def read_delivery_headers(properties: Any, redelivered: bool) -> DeliveryHeaders:
    """Every header the worker acts on, read without raising whatever the publisher sent."""
    raw = getattr(properties, "headers", None)
    if raw is None:
        return DeliveryHeaders()
    if not isinstance(raw, Mapping):
        return DeliveryHeaders(ignored=("headers",))
    ignored: list[str] = []

    def counter(name: str) -> int:
        value = raw.get(name)
        parsed = _count(value)
        if value is not None and parsed is None:
            ignored.append(name)
        return parsed or 0

    attempts = counter(ATTEMPTS)
    # A first delivery's count is the publisher's word, not the broker's: ignored.
    delivery_count = counter(DELIVERY_COUNT) if redelivered else 0
    counter(REPLAYS)
    if ORIGINAL_ROUTING_KEY in raw and routing_key_text(raw[ORIGINAL_ROUTING_KEY]) is None:
        ignored.append(ORIGINAL_ROUTING_KEY)
    if FIRST_FAILURE in raw and _time_header(raw[FIRST_FAILURE]) is None:
        ignored.append(FIRST_FAILURE)
    return DeliveryHeaders(attempts, delivery_count, tuple(ignored))


def iso_utc(moment: datetime) -> str:
    """ISO-8601 in UTC with milliseconds; naive datetimes are taken to be UTC already."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _time_text(value: datetime | str) -> str:
    return iso_utc(value) if isinstance(value, datetime) else value


def dead_letter_headers(
    reason: str,
    error_code: str,
    last_error: str,
    attempts: int,
    first_failure: datetime | str,
    last_failure: datetime | str,
    original_routing_key: str,
) -> dict[str, Any]:
    """The headers a message gains when the worker parks it in the dead-letter queue."""
    return {
        REASON: reason,
        ERROR_CODE: error_code,
        LAST_ERROR: last_error,
        DEAD_LETTER_ATTEMPTS: int(attempts),
        FIRST_FAILURE: _time_text(first_failure),
        LAST_FAILURE: _time_text(last_failure),
        ORIGINAL_ROUTING_KEY: original_routing_key,
    }


def for_replay(headers: Mapping[str, Any] | None) -> dict[str, Any]:
    """Headers for a replayed copy: one more replay, a fresh retry budget, no death marks."""
    kept = {
        name: value
        for name, value in (headers or {}).items()
        if name not in DEAD_LETTER_HEADERS and name not in BROKER_DEATH_HEADERS
    }
    kept.pop(ATTEMPTS, None)
    kept[REPLAYS] = _as_int((headers or {}).get(REPLAYS)) + 1
    return kept
