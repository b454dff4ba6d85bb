"""The outcome policy: every exception, answer class and claim of a command -> what happens.

One table decides, and ``calling``, ``readback``, ``retry`` and ``execute`` consult it:

| what happened                                    | command kind        | outcome              |
|--------------------------------------------------|---------------------|----------------------|
| invalid command (``InvalidCommand``)             | any                 | rejected             |
| documented error body (``PermanentError``)       | any                 | failed, its code     |
|   ... a collision after this key's own uncertain | not idempotent      | resolve by read-back |
|   attempt (see ``COLLISIONS``)                   |                     |                      |
| 429, request never sent (``TransientError``)     | any                 | retry now            |
| 5xx, undocumented body, no answer after sending  | naturally idempotent| retry now            |
|   (``AmbiguousError``)                           | not idempotent      | resolve by read-back |
| immediate retries used up                        | any                 | retry later (a delay |
|                                                  |                     | tier), or failed     |
|                                                  |                     | ``retries_exhausted``|
|                                                  |                     | when none is left    |
| anything else (a bug, the store unreachable)     | any                 | retry later (a delay |
|                                                  |                     | tier, not counted    |
|                                                  |                     | for the store; a bug |
|                                                  |                     | is parked as         |
|                                                  |                     | ``unexpected_error`` |
|                                                  |                     | once none is left:   |
|                                                  |                     | ``worker.fallback``) |
| claim: succeeded before / conflict / busy        | any                 | succeeded (stored    |
|                                                  |                     | event) / rejected /  |
|                                                  |                     | retry later          |

A clean refusal is a failure on every replay: a collision is taken for our own effect only
when the store recorded that an earlier attempt of the same key ended uncertain (an
ambiguous answer, or a crash mid-call), and even then only once a read-back confirms it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from contracts import InvalidCommand
from contracts.commands import (
    AddCredential,
    ChangeEmail,
    ChangeUsername,
    Command,
    CreateCustomer,
    DeleteCredential,
    DeleteCustomer,
)
from contracts.events import ErrorCode
from worker.errors import AmbiguousError, PermanentError, TransientError
from worker.store import ClaimStatus


class Disposition(StrEnum):
    SUCCEEDED = "succeeded"
    RETRY_NOW = "retry_now"  # on this thread, within the immediate-retry budget
    RETRY_LATER = "retry_later"  # through a delay tier, or the broker's redelivery
    RESOLVE = "resolve"  # read the API's state back before anything is sent again
    FAILED = "failed"
    REJECTED = "rejected"


# Dead-letter reasons (the x-provisioner-reason header).
REASON_FAILED = "failed"
REASON_RETRIES_EXHAUSTED = "retries_exhausted"
REASON_DELIVERY_LIMIT = "delivery_limit"
REASON_REJECTED = "rejected"
REASON_CONFLICT = "idempotency_conflict"
REASON_UNEXPECTED = "unexpected_error"  # a bug, every delay tier used (worker.fallback)


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Disposition
    code: ErrorCode | None = None  # the event's error code, for failed and rejected
    reason: str | None = None  # the dead-letter reason, for failed and rejected


# Calls whose repeat is not harmless when the first copy applied: their ambiguous answers
# are resolved, not blindly repeated. Every other call is naturally idempotent.
NOT_IDEMPOTENT: frozenset[type] = frozenset(
    {CreateCustomer, DeleteCustomer, AddCredential, DeleteCredential, ChangeUsername, ChangeEmail}
)

# The refusals a repeat meets when an earlier copy of it DID apply.
COLLISIONS: frozenset[tuple[type, ErrorCode]] = frozenset(
    {
        (CreateCustomer, ErrorCode.ALREADY_EXISTS),
        (AddCredential, ErrorCode.ALREADY_EXISTS),
        (ChangeUsername, ErrorCode.ALREADY_EXISTS),
        (ChangeUsername, ErrorCode.CUSTOMER_NOT_FOUND),
        (DeleteCustomer, ErrorCode.CUSTOMER_NOT_FOUND),
        (DeleteCredential, ErrorCode.NOT_FOUND),
    }
)

_RETRY_NOW = Verdict(Disposition.RETRY_NOW)
_RESOLVE = Verdict(Disposition.RESOLVE)
_RETRY_LATER = Verdict(Disposition.RETRY_LATER)
_EXHAUSTED = Verdict(Disposition.FAILED, ErrorCode.RETRIES_EXHAUSTED, REASON_RETRIES_EXHAUSTED)


def is_naturally_idempotent(command: Command) -> bool:
    return type(command) not in NOT_IDEMPOTENT


def of_error(error: BaseException, command: Command | None, *, uncertain: bool = False) -> Verdict:
    """What ``error`` means for ``command``; ``uncertain``: an earlier attempt of this key
    may have applied it (recorded in the store, or seen by this execution)."""
    if isinstance(error, InvalidCommand):
        return Verdict(Disposition.REJECTED, ErrorCode.INVALID_COMMAND, REASON_REJECTED)
    if isinstance(error, PermanentError):
        if uncertain and (type(command), error.code) in COLLISIONS:
            return _RESOLVE
        return Verdict(Disposition.FAILED, error.code, REASON_FAILED)
    if isinstance(error, AmbiguousError):
        return _RETRY_NOW if command is None or is_naturally_idempotent(command) else _RESOLVE
    if isinstance(error, TransientError):
        return _RETRY_NOW
    return _RETRY_LATER


def retries_now(error: BaseException, command: Command | None) -> bool:
    """Whether an immediate retry (or a resolution, which repeats the call) may follow."""
    return of_error(error, command).outcome in (Disposition.RETRY_NOW, Disposition.RESOLVE)


def may_have_applied(error: BaseException, command: Command) -> bool:
    """The error leaves this command's effect possibly in place: resolve before repeating."""
    return of_error(error, command).outcome is Disposition.RESOLVE


def when_retries_run_out(delay_left: bool) -> Verdict:
    """After the immediate retries (and any resolve budget): a delay tier, or give up."""
    return _RETRY_LATER if delay_left else _EXHAUSTED


def of_claim(status: ClaimStatus) -> Verdict | None:
    """What a claim's answer means; ``None`` when the claim was granted (run the command)."""
    if status is ClaimStatus.SUCCEEDED:
        return Verdict(Disposition.SUCCEEDED)
    if status is ClaimStatus.CONFLICT:
        return Verdict(Disposition.REJECTED, ErrorCode.IDEMPOTENCY_CONFLICT, REASON_CONFLICT)
    if status in (ClaimStatus.BUSY, ClaimStatus.CUSTOMER_BUSY):
        return _RETRY_LATER
    return None


def rejection_reason_of(code: ErrorCode) -> str:
    """The dead-letter reason of a recorded rejection, from its error code."""
    return REASON_CONFLICT if code is ErrorCode.IDEMPOTENCY_CONFLICT else REASON_REJECTED


def reason_of(code: ErrorCode) -> str:
    """The dead-letter reason of a recorded failure, from its error code."""
    if code is ErrorCode.RETRIES_EXHAUSTED:
        return REASON_RETRIES_EXHAUSTED
    if code is ErrorCode.DELIVERY_LIMIT:
        return REASON_DELIVERY_LIMIT
    return REASON_FAILED
