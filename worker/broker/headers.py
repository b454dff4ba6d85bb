"""The AMQP headers the worker owns, and small pure helpers to read and rewrite them.

Delayed retries count in ``ATTEMPTS``; a dead-lettered message also carries why it was
parked (``REASON``, ``ERROR_CODE``, ``LAST_ERROR``) and when (``FIRST_FAILURE``,
``LAST_FAILURE``). The broker adds its own ``x-death`` headers when it dead-letters a
message itself (delivery limit, TTL tiers): those are dropped on replay.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

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
LAST_FAILURE = "x-provisioner-last-failure"

# Set by the broker when it redelivers or dead-letters a message (RabbitMQ's own names).
X_DEATH = "x-death"
BROKER_DEATH_HEADERS = frozenset(
    {
        X_DEATH,
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-last-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
        "x-delivery-count",  # a quorum queue's redelivery count: a replay starts afresh
    }
)
DEAD_LETTER_HEADERS = frozenset({REASON, ERROR_CODE, LAST_ERROR, FIRST_FAILURE, LAST_FAILURE})


def _as_int(value: Any) -> int:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


def _headers(properties: Any) -> Mapping[str, Any]:
    return getattr(properties, "headers", None) or {}


def attempts_of(properties: Any) -> int:
    """Delayed retries made so far (0 for a fresh command or a garbled header)."""
    return _as_int(_headers(properties).get(ATTEMPTS))


def replays_of(properties: Any) -> int:
    """How many times an operator replayed this message from the dead-letter queue."""
    return _as_int(_headers(properties).get(REPLAYS))


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
