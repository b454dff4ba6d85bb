"""The outcome policy, row by row: every exception and answer class -> one outcome."""

from __future__ import annotations

import json
from typing import Any

import pytest

from contracts import ErrorCode, InvalidCommand, decode_command
from tests.integration.harness import customer_command
from worker.api.calls import Payload
from worker.api.classify import classify_response
from worker.errors import AmbiguousError, PermanentError, TransientError
from worker.outcomes import (
    Disposition,
    Verdict,
    is_naturally_idempotent,
    of_claim,
    of_error,
    reason_of,
    when_retries_run_out,
)
from worker.store import ClaimStatus

D = Disposition


def command(kind: str) -> Any:
    bodies: dict[str, dict[str, Any]] = {
        "CreateCustomer": customer_command("ada", key="k"),
        "DeleteCustomer": {"customer": "ada"},
        "AddCredential": {
            "customer": "ada",
            "credential_name": "smtp-ada",
            "credential_password": "cred-secret",
        },
        "DeleteCredential": {"customer": "ada", "credential_name": "smtp-ada"},
        "ChangeUsername": {"customer": "ada", "new_username": "ada2@example.com"},
        "ChangeEmail": {"customer": "ada", "new_email": "new@example.com"},
        "EnableCustomer": {"customer": "ada"},
        "ResetPassword": {"customer": "ada", "new_password": "s3cret-pass"},
        "ListCustomers": {},
    }
    body = {"idempotency_key": "k", **bodies[kind], "type": kind}
    return decode_command(json.dumps(body).encode())


def refused(code: ErrorCode) -> PermanentError:
    return PermanentError(code, "refused")


NOT_IDEMPOTENT = (
    "CreateCustomer",
    "DeleteCustomer",
    "AddCredential",
    "DeleteCredential",
    "ChangeUsername",
    "ChangeEmail",
)
IDEMPOTENT = ("EnableCustomer", "ResetPassword", "ListCustomers")

FAILED_EXISTS = Verdict(D.FAILED, ErrorCode.ALREADY_EXISTS, "failed")

# (what happened, command type, an earlier attempt was uncertain) -> verdict
ROWS: list[tuple[BaseException, str, bool, Verdict]] = [
    # a documented refusal: failed with its code, whoever asks, however often
    (
        refused(ErrorCode.API_REJECTED),
        "CreateCustomer",
        False,
        Verdict(D.FAILED, ErrorCode.API_REJECTED, "failed"),
    ),
    (
        refused(ErrorCode.AUTH_FAILED),
        "EnableCustomer",
        True,
        Verdict(D.FAILED, ErrorCode.AUTH_FAILED, "failed"),
    ),
    (refused(ErrorCode.ALREADY_EXISTS), "CreateCustomer", False, FAILED_EXISTS),
    (refused(ErrorCode.ALREADY_EXISTS), "AddCredential", False, FAILED_EXISTS),
    (refused(ErrorCode.ALREADY_EXISTS), "ChangeUsername", False, FAILED_EXISTS),
    # ... a collision after this key's own uncertain attempt: read back
    (refused(ErrorCode.ALREADY_EXISTS), "CreateCustomer", True, Verdict(D.RESOLVE)),
    (refused(ErrorCode.ALREADY_EXISTS), "AddCredential", True, Verdict(D.RESOLVE)),
    (refused(ErrorCode.ALREADY_EXISTS), "ChangeUsername", True, Verdict(D.RESOLVE)),
    (refused(ErrorCode.CUSTOMER_NOT_FOUND), "DeleteCustomer", True, Verdict(D.RESOLVE)),
    (refused(ErrorCode.NOT_FOUND), "DeleteCredential", True, Verdict(D.RESOLVE)),
    # ... but not a refusal that is no collision
    (
        refused(ErrorCode.API_REJECTED),
        "CreateCustomer",
        True,
        Verdict(D.FAILED, ErrorCode.API_REJECTED, "failed"),
    ),
    (
        refused(ErrorCode.NOT_FOUND),
        "AddCredential",
        True,
        Verdict(D.FAILED, ErrorCode.NOT_FOUND, "failed"),
    ),
    # nothing applied: retry now
    (TransientError("429", retry_after_s=1.0), "CreateCustomer", False, Verdict(D.RETRY_NOW)),
    (TransientError("refused"), "AddCredential", True, Verdict(D.RETRY_NOW)),
    # may be applied: resolve where a repeat is not harmless, else repeat
    *[(AmbiguousError("502"), kind, False, Verdict(D.RESOLVE)) for kind in NOT_IDEMPOTENT],
    *[(AmbiguousError("502"), kind, False, Verdict(D.RETRY_NOW)) for kind in IDEMPOTENT],
    # a bug or the store: the broker redelivers
    (RuntimeError("bug"), "CreateCustomer", False, Verdict(D.RETRY_LATER)),
]


@pytest.mark.parametrize(("error", "kind", "uncertain", "verdict"), ROWS)
def test_every_error_class_has_one_outcome(
    error: BaseException, kind: str, uncertain: bool, verdict: Verdict
) -> None:
    assert of_error(error, command(kind), uncertain=uncertain) == verdict


def test_an_invalid_command_is_rejected() -> None:
    invalid = InvalidCommand([])
    assert of_error(invalid, None) == Verdict(D.REJECTED, ErrorCode.INVALID_COMMAND, "rejected")


GARBLED = b'{"message": "succ'
ERROR_BODY = json.dumps({"message": "error", "errors": ["Username already exists"]}).encode()

# (status, body, command type) -> outcome: the answer classes end to end
ANSWERS: list[tuple[int, bytes, str, Disposition]] = [
    (502, b"<html>bad gateway</html>", "CreateCustomer", D.RESOLVE),
    (500, b"", "AddCredential", D.RESOLVE),
    (503, ERROR_BODY, "ChangeUsername", D.RESOLVE),
    (200, GARBLED, "DeleteCustomer", D.RESOLVE),
    (200, GARBLED, "ChangeEmail", D.RESOLVE),
    (502, b"", "EnableCustomer", D.RETRY_NOW),
    (200, GARBLED, "ResetPassword", D.RETRY_NOW),
    (429, b"", "CreateCustomer", D.RETRY_NOW),
    (400, ERROR_BODY, "CreateCustomer", D.FAILED),
]


@pytest.mark.parametrize(("status", "body", "kind", "outcome"), ANSWERS)
def test_every_answer_class_has_one_outcome(
    status: int, body: bytes, kind: str, outcome: Disposition
) -> None:
    # Given an answer of the API; When classified and judged for the command
    with pytest.raises(Exception) as caught:
        classify_response("call", status, {}, body, Payload.NONE)
    # Then it means exactly this
    assert of_error(caught.value, command(kind)).outcome is outcome


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (ClaimStatus.ACQUIRED, None),
        (ClaimStatus.ACQUIRED_AFTER_CRASH, None),
        (ClaimStatus.SUCCEEDED, Verdict(D.SUCCEEDED)),
        (
            ClaimStatus.CONFLICT,
            Verdict(D.REJECTED, ErrorCode.IDEMPOTENCY_CONFLICT, "idempotency_conflict"),
        ),
        (ClaimStatus.BUSY, Verdict(D.RETRY_LATER)),
        (ClaimStatus.CUSTOMER_BUSY, Verdict(D.RETRY_LATER)),
    ],
)
def test_every_claim_answer_has_one_outcome(status: ClaimStatus, verdict: Verdict | None) -> None:
    assert of_claim(status) == verdict


def test_running_out_of_retries_is_a_delay_tier_then_retries_exhausted() -> None:
    assert when_retries_run_out(delay_left=True) == Verdict(D.RETRY_LATER)
    exhausted = when_retries_run_out(delay_left=False)
    assert exhausted == Verdict(D.FAILED, ErrorCode.RETRIES_EXHAUSTED, "retries_exhausted")


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (ErrorCode.RETRIES_EXHAUSTED, "retries_exhausted"),
        (ErrorCode.DELIVERY_LIMIT, "delivery_limit"),
        (ErrorCode.ALREADY_EXISTS, "failed"),
        (ErrorCode.AUTH_FAILED, "failed"),
    ],
)
def test_a_recorded_failure_dead_letters_with_the_reason_of_its_code(
    code: ErrorCode, reason: str
) -> None:
    assert reason_of(code) == reason


def test_the_error_classes_carry_no_retries_exhausted_code() -> None:
    # The code of a give-up is the policy's, not the last error's
    assert not hasattr(TransientError("x"), "code")
    assert not hasattr(AmbiguousError("x"), "code")


@pytest.mark.parametrize("kind", [*NOT_IDEMPOTENT, *IDEMPOTENT])
def test_only_creates_deletes_and_name_changes_are_not_naturally_idempotent(kind: str) -> None:
    assert is_naturally_idempotent(command(kind)) == (kind in IDEMPOTENT)
