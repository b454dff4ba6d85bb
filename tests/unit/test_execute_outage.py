"""After a store outage gave a command back to the broker (docs/ordering.md, "A store
outage"): what its run left in the store is settled, so its next owner neither waits out our
leases nor calls the API again. Handler-level: a scripted client and a real SQLite store."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.test_execute import OutageOnComplete, ScriptedClient, envelope, executor
from worker.store import IdempotencyStore, StoreError

PROFILE = {
    "type": "UpdateCustomerProfile",
    "idempotency_key": "p1",
    "customer": "ada",
    "first_name": "Grace",
}


def given_back(store: IdempotencyStore, failing: set[str], answer: Any = None) -> Any:
    """Our worker ran PROFILE while ``failing`` store calls met the outage; it gave it back."""
    client = ScriptedClient(answer)
    outage = OutageOnComplete(store)
    outage.failing = failing
    worker = executor(client, outage)  # type: ignore[arg-type]
    with pytest.raises(StoreError):
        worker.process(envelope(PROFILE))
    return worker, client


def test_an_outcome_the_store_missed_is_recorded_by_let_go_and_replayed_elsewhere(
    store: IdempotencyStore,
) -> None:
    # Given a profile update the API applied, its outcome and its customer's release lost
    # to the outage (a profile update has no read-back: an uncertain key would be re-sent)
    worker, client = given_back(store, {"complete", "unlock_customer"})
    # When the store is back and our worker lets the command go
    worker.let_go(envelope(PROFILE).command)
    # Then another process running the redelivered command replays the recorded outcome at
    # once (the customer is free), without a second call
    store.heartbeat("other")
    decision = executor(client, store, owner="other").process(envelope(PROFILE))
    assert (decision.outcome, decision.replayed) == ("succeeded", True)
    assert client.calls == ["UpdateCustomerProfile"]


def test_letting_go_of_a_command_the_outage_stopped_before_its_claim_changes_nothing(
    store: IdempotencyStore,
) -> None:
    # Given a command whose claim met the outage (nothing of it is in the store)
    worker, client = given_back(store, {"claim"})
    # When our worker lets it go once the store is back
    worker.let_go(envelope(PROFILE).command)
    # Then another process runs it normally, once
    store.heartbeat("other")
    decision = executor(client, store, owner="other").process(envelope(PROFILE))
    assert decision.outcome == "succeeded" and not decision.replayed
    assert client.calls == ["UpdateCustomerProfile"]
