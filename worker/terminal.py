"""The terminal events of a command, and the decisions that carry them to the broker.

Pure builders: what ``worker.execute`` decided (with the outcome policy's codes and
reasons) becomes the event body, its routing key and, for failures and rejections, the
dead-letter copy. Nothing here touches the store or the broker.
"""

from __future__ import annotations

from typing import Any

from contracts import (
    SUCCESS_EVENTS,
    Command,
    CommandFailed,
    CommandRejected,
    ErrorCode,
    ErrorInfo,
    InvalidCommand,
    Outcome,
    command_customer,
    decode_event,
    encode_event,
    make_event,
    routing_key,
)
from worker.decision import DeadLetter, Decision, Envelope
from worker.errors import ProvisioningError
from worker.outcomes import (
    REASON_DELIVERY_LIMIT,
    REASON_REJECTED,
    Verdict,
    reason_of,
    rejection_reason_of,
)

# The success events that carry what the API returned, and the field that carries it.
PAYLOAD_FIELDS = {"ListCustomers": "customers", "ListApps": "apps", "GetAppSettings": "settings"}


def routing_key_for(command_type: str | None, outcome: str) -> str:
    return routing_key(command_type, Outcome(outcome))


def _key(command: Command, outcome: str) -> str:
    return routing_key_for(type(command).__name__, outcome)


def common_fields(env: Envelope, command: Command) -> dict[str, Any]:
    return {
        "command_type": type(command).__name__,
        "idempotency_key": command.idempotency_key,
        "customer": command_customer(command),
        "correlation_id": env.correlation_id,
        "attempts": env.delayed_attempts + 1,
    }


def success_event(env: Envelope, command: Command, result: Any) -> bytes:
    event_cls = SUCCESS_EVENTS[type(command).__name__]
    field = PAYLOAD_FIELDS.get(type(command).__name__)
    payload = {field: result} if field else {}
    return encode_event(make_event(event_cls, **common_fields(env, command), **payload))


def succeeded(command: Command, body: bytes, *, replayed: bool = False) -> Decision:
    if replayed:
        decode_event(body)  # a corrupt record must fail loudly, not publish garbage
    name = type(command).__name__
    return Decision(name, "succeeded", body, _key(command, "succeeded"), replayed=replayed)


def failure_event(
    env: Envelope, command: Command, exc: ProvisioningError, verdict: Verdict
) -> bytes:
    assert verdict.code is not None
    # Retries ran out: the same command may succeed when replayed.
    retryable = verdict.code is ErrorCode.RETRIES_EXHAUSTED
    error = ErrorInfo(
        code=verdict.code, message=str(exc), api_errors=list(exc.api_errors), retryable=retryable
    )
    return encode_event(make_event(CommandFailed, **common_fields(env, command), error=error))


def failed(command: Command, body: bytes, verdict: Verdict, message: str) -> Decision:
    assert verdict.code is not None and verdict.reason is not None
    return Decision(
        type(command).__name__,
        "failed",
        body,
        _key(command, "failed"),
        dead_letter=DeadLetter(verdict.reason, verdict.code.value, message),
        error_code=verdict.code.value,
    )


def stored_failure(command: Command, stored: bytes) -> Decision | None:
    """A recorded CommandFailed again, with its dead-letter copy; None for another event."""
    event = decode_event(stored)
    if not isinstance(event, CommandFailed):
        return None
    code = event.error.code
    return Decision(
        type(command).__name__,
        "failed",
        stored,
        _key(command, "failed"),
        dead_letter=DeadLetter(reason_of(code), code.value, event.error.message),
        replayed=True,
        error_code=code.value,
    )


def poisoned(env: Envelope, command: Command) -> Decision:
    message = f"delivered {env.delivery_count + 1} times without an outcome"
    error = ErrorInfo(code=ErrorCode.DELIVERY_LIMIT, message=message, retryable=True)
    event = make_event(CommandFailed, **common_fields(env, command), error=error)
    return Decision(
        type(command).__name__,
        "failed",
        encode_event(event),
        _key(command, "failed"),
        dead_letter=DeadLetter(REASON_DELIVERY_LIMIT, ErrorCode.DELIVERY_LIMIT.value, message),
        error_code=ErrorCode.DELIVERY_LIMIT.value,
    )


def rejected(env: Envelope, command: Command, verdict: Verdict, message: str) -> Decision:
    assert verdict.code is not None and verdict.reason is not None
    error = ErrorInfo(code=verdict.code, message=message, retryable=False)
    event = make_event(CommandRejected, **common_fields(env, command), error=error)
    return Decision(
        type(command).__name__,
        "rejected",
        encode_event(event),
        _key(command, "rejected"),
        dead_letter=DeadLetter(verdict.reason, verdict.code.value, message),
        error_code=verdict.code.value,
    )


def rejected_invalid(env: Envelope, invalid: InvalidCommand) -> Decision:
    error = ErrorInfo(code=ErrorCode.INVALID_COMMAND, message=str(invalid), retryable=False)
    command_type = invalid.command_type or "unknown"
    event = make_event(
        CommandRejected,
        command_type=command_type,
        idempotency_key=invalid.idempotency_key or "",
        customer=invalid.customer,
        correlation_id=env.correlation_id,
        attempts=env.delayed_attempts + 1,
        error=error,
    )
    return Decision(
        command_type,
        "rejected",
        encode_event(event),
        routing_key_for(invalid.command_type, "rejected"),
        dead_letter=DeadLetter(REASON_REJECTED, ErrorCode.INVALID_COMMAND.value, str(invalid)),
        error_code=ErrorCode.INVALID_COMMAND.value,
    )


def stored_rejection(stored: bytes) -> Decision | None:
    """A recorded rejection of an invalid command again, with its dead-letter copy; None for
    another event."""
    event = decode_event(stored)
    if not isinstance(event, CommandRejected):
        return None
    code = event.error.code
    return Decision(
        event.command_type,
        "rejected",
        stored,
        routing_key_for(event.command_type, "rejected"),
        dead_letter=DeadLetter(rejection_reason_of(code), code.value, event.error.message),
        replayed=True,
        error_code=event.error.code.value,
    )
