"""The decision for a delivery that nothing else decided: an exception the executor did not
map to an outcome (a bug, a store outage), or a publish the broker refused.

No such exception may end the process or loop the message through immediate redeliveries
up to the delivery limit:

- A store error (a PostgreSQL failover, a locked SQLite file) or a refused publish is the
  infrastructure's, not the command's: the command waits in the first delay tier and comes
  back, without using up one of its attempts. (A partition's ordered command never gets
  here for a store error: it waits out the outage in place or goes back to its partition
  unacked, ``worker/outage.py``; a delay tier without a hold would let its customer's later
  commands pass it.)
- Anything else counts a delayed attempt; when every tier is used the message is parked in
  the dead-letter queue (reason ``unexpected_error``), with a ``CommandFailed`` event when
  it decoded as a command.
"""

from __future__ import annotations

from contracts import CommandFailed, ErrorCode, ErrorInfo, encode_event, make_event
from worker.decision import DeadLetter, Decision, Envelope
from worker.outcomes import REASON_UNEXPECTED, Disposition, Verdict
from worker.store import StoreError
from worker.terminal import common_fields, failed

PARKED = Verdict(Disposition.FAILED, ErrorCode.RETRIES_EXHAUSTED, REASON_UNEXPECTED)
ERROR_TEXT_MAX_LENGTH = 300


def describe(exc: BaseException) -> str:
    """The exception's class and (bounded) text: safe to log, exceptions carry no secrets."""
    text = str(exc)[:ERROR_TEXT_MAX_LENGTH]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def infrastructure_retry(
    envelope: Envelope, why: str, retry_delays_s: tuple[float, ...]
) -> Decision:
    """Come back after the first delay tier; the attempt does not count."""
    return Decision(
        _command_type(envelope),
        "retry",
        retry_in_s=retry_delays_s[0],
        last_error=why,
        count_attempt=False,
    )


def unexpected_decision(
    envelope: Envelope, exc: BaseException, retry_delays_s: tuple[float, ...]
) -> Decision:
    if isinstance(exc, StoreError):
        return infrastructure_retry(envelope, f"store unavailable: {describe(exc)}", retry_delays_s)
    attempts = envelope.delayed_attempts
    if attempts < len(retry_delays_s):
        return Decision(
            _command_type(envelope),
            "retry",
            retry_in_s=retry_delays_s[attempts],
            last_error=f"unexpected error: {describe(exc)}",
        )
    return _parked(envelope, exc)


def _parked(envelope: Envelope, exc: BaseException) -> Decision:
    message = f"unexpected error after {envelope.delayed_attempts + 1} attempts: {describe(exc)}"
    command = envelope.command
    if command is None:  # nothing decoded: no event can name it, the copy is parked alone
        code = ErrorCode.RETRIES_EXHAUSTED.value
        parked = DeadLetter(REASON_UNEXPECTED, code, message)
        return Decision(_command_type(envelope), "failed", dead_letter=parked)
    error = ErrorInfo(code=ErrorCode.RETRIES_EXHAUSTED, message=message, retryable=True)
    event = make_event(CommandFailed, **common_fields(envelope, command), error=error)
    return failed(command, encode_event(event), PARKED, message)


def _command_type(envelope: Envelope) -> str:
    if envelope.command is not None:
        return type(envelope.command).__name__
    invalid = envelope.invalid
    return (invalid.command_type if invalid is not None else None) or "unknown"
