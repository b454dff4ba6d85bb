"""Events built, routed, encoded and decoded: what the worker does with the Structs of
``contracts.events`` and what an event consumer needs to read them back.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec

from contracts.events import (
    SUCCESS_EVENTS,
    CommandFailed,
    CommandRejected,
    Event,
    EventBase,
    Outcome,
)
from contracts.secret import Secret

UNKNOWN_COMMAND_TYPE = "unknown"

EventT = TypeVar("EventT", bound=EventBase)


def routing_key(command_type: str | None, outcome: Outcome) -> str:
    """``<CommandType>.<outcome>``; ``unknown`` stands for a missing or unknown type."""
    known = command_type if command_type in SUCCESS_EVENTS else UNKNOWN_COMMAND_TYPE
    return f"{known}.{Outcome(outcome).value}"


def outcome_of(event: EventBase) -> Outcome:
    if isinstance(event, CommandFailed):
        return Outcome.FAILED
    if isinstance(event, CommandRejected):
        return Outcome.REJECTED
    return Outcome.SUCCEEDED


def new_event_id() -> str:
    return uuid.uuid4().hex


def make_event(
    cls: type[EventT],
    *,
    command_type: str,
    idempotency_key: str,
    customer: str | None,
    correlation_id: str | None,
    attempts: int,
    **payload: Any,
) -> EventT:
    """Build an event with a fresh ``event_id`` and ``occurred_at`` = now (UTC)."""
    return cls(
        event_id=new_event_id(),
        command_type=command_type,
        idempotency_key=idempotency_key,
        customer=customer,
        correlation_id=correlation_id,
        occurred_at=datetime.now(UTC),
        attempts=attempts,
        **payload,
    )


def _refuse_secret(obj: Any) -> Any:
    if isinstance(obj, Secret):
        raise TypeError("a Secret must never be encoded into an event")
    raise NotImplementedError(f"cannot encode {type(obj).__name__} into an event")


_EVENT_ENCODER = msgspec.json.Encoder(enc_hook=_refuse_secret)
_EVENT_DECODER: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)


def encode_event(event: EventBase) -> bytes:
    return _EVENT_ENCODER.encode(event)


def decode_event(data: bytes | bytearray | memoryview | str) -> Event:
    """Decode an event; raises ``msgspec.DecodeError``/``ValidationError`` on a bad body."""
    try:
        return _EVENT_DECODER.decode(data)
    except RecursionError:
        raise msgspec.DecodeError("event body is nested too deeply") from None
