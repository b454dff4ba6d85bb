"""Decisions for what the executor did not decide: retried later, parked at last."""

from __future__ import annotations

import json

from contracts.examples import example_commands
from worker.decision import Envelope
from worker.fallback import infrastructure_retry, unexpected_decision
from worker.outcomes import REASON_UNEXPECTED
from worker.store import StoreError

TIERS = (1.0, 5.0)
COMMAND = example_commands()["EnableCustomer"]


def envelope(attempts: int, command: object = COMMAND) -> Envelope:
    return Envelope(command, None, "corr-1", attempts)  # type: ignore[arg-type]


def test_a_store_error_waits_in_the_first_tier_without_using_an_attempt() -> None:
    decision = unexpected_decision(envelope(1), StoreError("connection refused"), TIERS)
    assert (decision.outcome, decision.retry_in_s, decision.count_attempt) == ("retry", 1.0, False)
    assert decision.last_error == "store unavailable: StoreError: connection refused"


def test_a_bug_is_retried_through_the_tiers_then_parked_with_an_event() -> None:
    first = unexpected_decision(envelope(0), KeyError("boom"), TIERS)
    second = unexpected_decision(envelope(1), KeyError("boom"), TIERS)
    parked = unexpected_decision(envelope(2), KeyError("boom"), TIERS)
    assert (first.retry_in_s, second.retry_in_s) == (1.0, 5.0)
    assert first.count_attempt and second.count_attempt
    assert parked.outcome == "failed" and parked.dead_letter is not None
    assert parked.dead_letter.reason == REASON_UNEXPECTED
    assert parked.event is not None
    event = json.loads(parked.event)
    assert (event["type"], event["error"]["code"]) == ("CommandFailed", "retries_exhausted")
    assert event["idempotency_key"] == COMMAND.idempotency_key
    assert parked.routing_key == "EnableCustomer.failed"


def test_a_delivery_that_never_decoded_is_parked_without_an_event() -> None:
    parked = unexpected_decision(envelope(2, command=None), ValueError("x"), TIERS)
    assert parked.event is None and parked.dead_letter is not None


def test_an_infrastructure_retry_names_its_reason() -> None:
    decision = infrastructure_retry(envelope(0), "the broker refused a publish", TIERS)
    assert decision.last_error == "the broker refused a publish"
    assert decision.command_type == "EnableCustomer"
