"""Collisions, uncertainty recorded in the store, lost leases and the fingerprint key:
handler-level, with a scripted client and a real SQLite store."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts import Customer, ErrorCode
from tests.integration.harness import customer_command
from tests.unit.test_execute import ScriptedClient, envelope, executor
from worker.errors import AmbiguousError, PermanentError
from worker.store import IdempotencyStore, open_store
from worker.terminal import success_event


@pytest.fixture(autouse=True)
def instant_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tenacity.nap.time.sleep", lambda _s: None)
    monkeypatch.setattr("worker.calling.RESOLVE_ATTEMPTS", 2)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[IdempotencyStore]:
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    store.heartbeat("me")
    yield store
    store.close()


CREATE = customer_command("ada", key="kc")
ADD = {
    "type": "AddCredential",
    "idempotency_key": "ka",
    "customer": "ada",
    "credential_name": "smtp-ada",
    "credential_password": "cred-secret",
}
RENAME = {
    "type": "ChangeUsername",
    "idempotency_key": "kr",
    "customer": "ada",
    "new_username": "bob@example.com",
}
EXISTS = PermanentError(ErrorCode.ALREADY_EXISTS, "already exists")
OURS = Customer(username="ada", email="ada@example.com")


@pytest.mark.parametrize("command", [CREATE, ADD, RENAME], ids=["create", "credential", "rename"])
def test_a_clean_already_exists_stays_failed_on_every_replay(
    store: IdempotencyStore, command: dict[str, Any]
) -> None:
    # Given a command refused cleanly with already_exists (even where a read-back would
    # find a customer with our email)
    client = ScriptedClient(EXISTS, EXISTS, EXISTS, customers=[OURS])
    first = executor(client, store).process(envelope(command))
    assert first.outcome == "failed"
    # When it is replayed from the dead-letter queue, twice
    replays = [executor(client, store).process(envelope(command)) for _ in range(2)]
    # Then each replay fails the same way, with no read-back and no edit of any kind
    assert [r.outcome for r in replays] == ["failed", "failed"]
    assert client.calls == [command["type"]] * 3
    record = store.get(command["idempotency_key"])
    assert record is not None and not record.uncertain


def test_an_uncertain_attempt_is_recorded_and_lets_a_replay_take_the_collision(
    store: IdempotencyStore,
) -> None:
    # Given an AddCredential whose answer was ambiguous and which no repeat could settle
    ambiguous = AmbiguousError("502")
    client = ScriptedClient(*[ambiguous] * 5)
    first = executor(client, store).process(envelope(ADD, attempts=2))
    assert first.outcome == "failed"
    record = store.get("ka")
    assert record is not None and record.uncertain
    # When it is replayed and the API says the credential exists
    client = ScriptedClient(EXISTS)
    replay = executor(client, store).process(envelope(ADD))
    # Then it is our own earlier effect: success, and only the add was sent
    assert replay.outcome == "succeeded"
    assert client.calls == ["AddCredential"]


def test_a_takeover_after_a_crash_marks_the_key_uncertain(store: IdempotencyStore) -> None:
    # Given a worker that died holding the key of a create
    dead = executor(ScriptedClient(), store, owner="dead")
    fingerprint = dead.fingerprint(envelope(CREATE).command)  # type: ignore[arg-type]
    store.claim("kc", fingerprint, "dead", 60.0, 30.0)
    # When another worker runs it and the customer with our email exists
    client = ScriptedClient(customers=[OURS])
    decision = executor(client, store).process(envelope(CREATE))
    # Then the read-back settles it without a second create
    assert decision.outcome == "succeeded"
    assert client.calls == ["read-back"]
    record = store.get("kc")
    assert record is not None and record.uncertain


def test_a_lost_lease_publishes_the_event_of_whoever_completed(store: IdempotencyStore) -> None:
    # Given our call runs while another worker takes the key over and completes it
    class TakenOver(ScriptedClient):
        def execute(self, command: Any) -> Any:
            other = executor(ScriptedClient(None), store, owner="other")
            store.heartbeat("other")
            fingerprint = other.fingerprint(command)
            store.claim(command.idempotency_key, fingerprint, "other", 60.0, 0.0)
            self.winner = success_event(envelope(CREATE), command, None)
            store.complete(command.idempotency_key, "other", True, self.winner)
            return super().execute(command)

    client = TakenOver(None)
    # When our call returns and its completion finds the lease gone
    decision = executor(client, store).process(envelope(CREATE))
    # Then we publish the other worker's stored event, not one of our own
    assert decision.outcome == "succeeded" and decision.replayed
    assert decision.event == client.winner


def test_a_record_made_with_the_legacy_key_still_matches(store: IdempotencyStore) -> None:
    # Given a record fingerprinted with the API key, before the store had its own key
    old = executor(ScriptedClient(None), store)
    old._config = dataclasses.replace(old._config, fingerprint_key=b"api-key")
    first = old.process(envelope(CREATE))
    # When the upgraded worker (store key, API key kept as legacy) sees the command again
    new = executor(ScriptedClient(), store)
    new._config = dataclasses.replace(
        new._config, fingerprint_key=b"store-key", legacy_fingerprint_key=b"api-key"
    )
    again = new.process(envelope(CREATE))
    # Then it is the stored event, not a conflict
    assert again.replayed and again.event == first.event
    assert json.loads(again.event or b"")["type"] == "CustomerCreated"
