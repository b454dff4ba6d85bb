"""The executor's decisions, handler-level: a scripted client and a real SQLite store."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

from contracts import AddCredential, Customer, ErrorCode, decode_command
from tests.integration.harness import customer_command
from worker.decision import Envelope, ExecutorConfig
from worker.delivery import Delivery, read_delivery
from worker.errors import AmbiguousError, PermanentError, TransientError
from worker.execute import Executor
from worker.store import ClaimStatus, IdempotencyStore, StoreError, open_store

Step = Callable[[Any], Any]


class ScriptedClient:
    """Answers ``execute`` from a script of results or exceptions; records every call."""

    def __init__(self, *script: Any, customers: list[Customer] | None = None) -> None:
        self.script = list(script)
        self.calls: list[str] = []
        self.customers = customers or []

    def execute(self, command: Any) -> Any:
        self.calls.append(type(command).__name__)
        step = self.script.pop(0) if self.script else None
        if isinstance(step, BaseException):
            raise step
        return step

    def list_customers(self, **filters: Any) -> list[Customer]:
        self.calls.append("read-back")
        return [c for c in self.customers if c.username == filters.get("username")]


@pytest.fixture(autouse=True)
def instant_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tenacity.nap.time.sleep", lambda _s: None)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[IdempotencyStore]:
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    store.heartbeat("me")
    yield store
    store.close()


def executor(client: ScriptedClient, store: IdempotencyStore, owner: str = "me") -> Executor:
    config = ExecutorConfig(
        owner=owner,
        retry_delays_s=(1.0, 2.0),
        immediate_retries=3,
        immediate_retry_budget_s=5.0,
        lease_ttl_s=60.0,
        dead_after_s=30.0,
        fingerprint_key=b"k",
    )
    return Executor(client, store, config)


def envelope(command: dict[str, Any], attempts: int = 0) -> Envelope:
    return Envelope(decode_command(json.dumps(command).encode()), None, "corr", attempts)


CREATE = customer_command("ada", key="k1")


def test_success_publishes_the_success_event_and_stores_it(store: IdempotencyStore) -> None:
    client = ScriptedClient(None)
    decision = executor(client, store).process(envelope(CREATE))
    assert decision.outcome == "succeeded"
    assert decision.routing_key == "CreateCustomer.succeeded"
    event = json.loads(decision.event or b"")
    assert event["type"] == "CustomerCreated"
    assert event["correlation_id"] == "corr"
    assert "s3cret-pass" not in (decision.event or b"").decode()
    record = store.get("k1")
    assert record is not None and record.event == decision.event


def test_second_delivery_replays_the_stored_event_without_calling(store: IdempotencyStore) -> None:
    client = ScriptedClient(None)
    first = executor(client, store).process(envelope(CREATE))
    second = executor(client, store).process(envelope(CREATE))
    assert second.replayed and second.event == first.event
    assert client.calls == ["CreateCustomer"]


def test_other_payload_under_a_used_key_is_a_conflict(store: IdempotencyStore) -> None:
    client = ScriptedClient(None)
    executor(client, store).process(envelope(CREATE))
    decision = executor(client, store).process(envelope({**CREATE, "city": "Paris"}))
    assert decision.outcome == "rejected"
    assert decision.dead_letter is not None
    assert decision.dead_letter.error_code == "idempotency_conflict"
    assert client.calls == ["CreateCustomer"]


def test_a_redelivered_conflict_publishes_its_recorded_rejection_again(
    store: IdempotencyStore,
) -> None:
    # Given a key used once, and another payload under it rejected as a conflict
    client = ScriptedClient(None)
    executor(client, store).process(envelope(CREATE))
    other = envelope({**CREATE, "city": "Paris"})
    first = executor(client, store).process(other)
    # When the broker redelivers the rejected one (its ack was lost)
    again = executor(client, store).process(dataclasses.replace(other, delivery_count=1))
    # Then the same CommandRejected goes out again, with the same dead-letter copy
    assert again.event == first.event and again.replayed
    assert again.dead_letter == first.dead_letter
    assert again.dead_letter is not None and again.dead_letter.reason == "idempotency_conflict"
    assert again.routing_key == first.routing_key == "CreateCustomer.rejected"
    # And a fresh publish of it is a rejection of its own
    fresh = executor(client, store).process(other)
    assert fresh.event != first.event and not fresh.replayed


def test_key_leased_by_a_live_worker_is_delayed_without_counting(store: IdempotencyStore) -> None:
    store.heartbeat("other")
    fingerprint = executor(ScriptedClient(), store).fingerprint(envelope(CREATE).command)  # type: ignore[arg-type]
    store.claim("k1", fingerprint, "other", 60.0, 30.0)
    client = ScriptedClient(None)
    decision = executor(client, store).process(envelope(CREATE))
    assert decision.outcome == "retry" and decision.count_attempt is False
    assert client.calls == []


def test_redelivery_waits_for_a_dead_holder_instead_of_letting_later_commands_pass(
    store: IdempotencyStore,
) -> None:
    # Given a key leased by a worker that was killed mid-call (its heartbeat stops now)
    store.heartbeat("killed")
    config = dataclasses.replace(executor(ScriptedClient(), store)._config, dead_after_s=0.3)
    fingerprint = executor(ScriptedClient(), store).fingerprint(envelope(CREATE).command)  # type: ignore[arg-type]
    store.claim("k1", fingerprint, "killed", 60.0, 0.3)
    client = ScriptedClient(None)
    # When the broker redelivers the command to a live worker
    redelivered = dataclasses.replace(envelope(CREATE), delivery_count=1)
    decision = Executor(client, store, config).process(redelivered)
    # Then it waits on its pool thread (keeping the customer's order) until the holder is
    # known dead, and runs the command after a read-back, rather than going to a delay tier
    assert decision.outcome == "succeeded"
    assert client.calls == ["read-back", "CreateCustomer"]


def other_claims(store: IdempotencyStore, customer: str, key: str) -> bool:
    """Whether the worker "other" gets ``customer`` (claiming ``key`` with it)."""
    claim = store.claim(key, "fp", "other", 60.0, 30.0, customer=customer)
    return claim.status is ClaimStatus.ACQUIRED


def test_a_customer_held_by_another_live_worker_waits_then_goes_to_a_delay_tier(
    store: IdempotencyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given another live worker (heartbeating) running a command of the same customer
    monkeypatch.setattr("worker.execute.BUSY_WAIT_MARGIN_S", 0.0)
    store.heartbeat("other")
    assert other_claims(store, "ada", "o1")
    alive = threading.Event()

    def heartbeat() -> None:
        while not alive.wait(0.02):
            store.heartbeat("other")

    beating = threading.Thread(target=heartbeat)
    beating.start()
    client = ScriptedClient(None)
    quick = dataclasses.replace(executor(client, store)._config, dead_after_s=0.3)
    # When this worker gets the customer's create
    try:
        decision = Executor(client, store, quick).process(envelope(CREATE))
    finally:
        alive.set()
        beating.join()
    # Then it did not call the API, and comes back later without using an attempt
    assert decision.outcome == "retry" and decision.count_attempt is False
    assert client.calls == []
    # And once the other worker is done, it runs, and lets the customer go again
    store.unlock_customer("ada", "other")
    assert executor(client, store).process(envelope(CREATE)).outcome == "succeeded"
    assert other_claims(store, "ada", "o2")


def test_permanent_error_fails_at_once_and_dead_letters(store: IdempotencyStore) -> None:
    client = ScriptedClient(PermanentError(ErrorCode.ALREADY_EXISTS, "Username already exists"))
    decision = executor(client, store).process(envelope(CREATE))
    assert decision.outcome == "failed"
    event = json.loads(decision.event or b"")
    assert event["error"]["code"] == "already_exists"
    assert decision.dead_letter is not None and decision.dead_letter.reason == "failed"
    assert client.calls == ["CreateCustomer"]


def test_transient_errors_go_to_the_delay_tier_then_give_up(store: IdempotencyStore) -> None:
    client = ScriptedClient(*[TransientError("503")] * 3)
    decision = executor(client, store).process(envelope(CREATE))
    assert decision.outcome == "retry" and decision.retry_in_s == 1.0
    assert len(client.calls) == 3
    client = ScriptedClient(*[TransientError("503")] * 3)
    decision = executor(client, store).process(envelope(CREATE, attempts=2))
    assert decision.outcome == "failed"
    assert decision.dead_letter is not None
    assert decision.dead_letter.reason == "retries_exhausted"


def test_redelivery_after_a_recorded_failure_publishes_that_failure_again(
    store: IdempotencyStore,
) -> None:
    # Given a command that gave up after its last delay tier, whose worker died before the ack
    failing = ScriptedClient(*[TransientError("503")] * 3)
    first = executor(failing, store).process(envelope(CREATE, attempts=2))
    assert first.outcome == "failed"
    # When the broker redelivers it, and the API would now succeed
    client = ScriptedClient(None)
    redelivered = dataclasses.replace(envelope(CREATE, attempts=2), delivery_count=1)
    again = executor(client, store).process(redelivered)
    # Then the same failure event goes out again with its dead letter, and nothing is called
    assert again.outcome == "failed" and again.event == first.event
    assert again.dead_letter == first.dead_letter
    assert client.calls == []
    # And a fresh delivery (an operator's replay) still runs it again, without a read-back:
    # every earlier attempt was refused before anything was applied
    replayed = executor(client, store).process(envelope(CREATE))
    assert replayed.outcome == "succeeded" and client.calls == ["CreateCustomer"]


def test_ambiguous_create_is_resolved_by_reading_back(store: IdempotencyStore) -> None:
    # Given the create timed out but the customer with our email exists
    ours = Customer(username="ada", email="ada@example.com")
    client = ScriptedClient(AmbiguousError("read timeout"), customers=[ours])
    decision = executor(client, store).process(envelope(CREATE))
    # Then it is a success after one call and one read-back, never a second create
    assert decision.outcome == "succeeded"
    assert client.calls == ["CreateCustomer", "read-back"]


def test_ambiguous_create_of_someone_elses_customer_is_not_success(
    store: IdempotencyStore,
) -> None:
    theirs = Customer(username="ada", email="someone@else.example")
    exists = PermanentError(ErrorCode.ALREADY_EXISTS, "Username already exists")
    client = ScriptedClient(AmbiguousError("read timeout"), exists, customers=[theirs])
    decision = executor(client, store).process(envelope(CREATE))
    assert decision.outcome == "failed"
    # (the collision is read back once more: it is not ours)
    assert client.calls == ["CreateCustomer", "read-back", "CreateCustomer", "read-back"]


def test_ambiguous_add_credential_that_exists_is_ours_without_an_edit(
    store: IdempotencyStore,
) -> None:
    command = {
        "type": "AddCredential",
        "idempotency_key": "kc",
        "customer": "ada",
        "credential_name": "smtp-ada",
        "credential_password": "cred-secret",
    }
    exists = PermanentError(ErrorCode.ALREADY_EXISTS, "Credential already exists")
    client = ScriptedClient(AmbiguousError("reset"), exists, None)
    decision = executor(client, store).process(envelope(command))
    # Then the collision after our own lost answer is our credential: success, and its
    # password is not touched
    assert decision.outcome == "succeeded"
    assert client.calls == ["AddCredential", "AddCredential"]
    assert isinstance(decode_command(json.dumps(command).encode()), AddCredential)


ADD_CREDENTIAL = {
    "type": "AddCredential",
    "idempotency_key": "kc2",
    "customer": "ada",
    "credential_name": "temp001",
    "credential_password": "cred-secret",
}


def test_an_unresolved_ambiguous_add_keeps_resolving_in_place_instead_of_a_delay_tier(
    store: IdempotencyStore,
) -> None:
    # Given an add whose answer was lost, and whose repeats then meet three 429s: more
    # than the immediate retries allow
    exists = PermanentError(ErrorCode.ALREADY_EXISTS, "Credential already exists")
    busy = TransientError("429")
    client = ScriptedClient(AmbiguousError("reset"), busy, busy, busy, exists, None)
    # When it is processed
    decision = executor(client, store).process(envelope(ADD_CREDENTIAL))
    # Then it was resolved on the pool thread (so the customer's later DeleteCredential
    # could not run in between and be undone by a second add): one success, no delay tier
    assert decision.outcome == "succeeded"
    assert client.calls == ["AddCredential"] * 5


def test_an_ambiguous_add_still_unresolved_after_the_resolve_budget_goes_to_a_delay_tier(
    store: IdempotencyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the API keeps failing after an ambiguous add, beyond the resolve attempts
    monkeypatch.setattr("worker.calling.RESOLVE_ATTEMPTS", 2)
    busy = TransientError("503")
    client = ScriptedClient(AmbiguousError("reset"), *([busy] * 10))
    # When it is processed; Then after 3 immediate and 2 resolving attempts it is delayed
    decision = executor(client, store).process(envelope(ADD_CREDENTIAL))
    assert decision.outcome == "retry"
    assert client.calls == ["AddCredential"] * 5


def test_a_transient_failure_without_ambiguity_goes_to_a_delay_tier_at_once(
    store: IdempotencyStore,
) -> None:
    # Given an add refused three times before anything could be applied
    busy = TransientError("503")
    client = ScriptedClient(busy, busy, busy, None)
    # Then only the immediate retries run before the delay tier
    decision = executor(client, store).process(envelope(ADD_CREDENTIAL))
    assert decision.outcome == "retry"
    assert client.calls == ["AddCredential"] * 3


def test_a_retried_delete_after_a_crash_tolerates_not_found(store: IdempotencyStore) -> None:
    command = {"type": "DeleteCustomer", "idempotency_key": "kd", "customer": "ada"}
    client = ScriptedClient(AmbiguousError("timeout"), customers=[])
    decision = executor(client, store).process(envelope(command))
    assert decision.outcome == "succeeded"
    assert client.calls == ["DeleteCustomer", "read-back"]


def test_a_message_at_the_delivery_limit_is_parked_with_an_event(store: IdempotencyStore) -> None:
    # Given a command the broker has redelivered up to one short of its delivery limit
    client = ScriptedClient(None)
    worker = executor(client, store)
    worker._config = dataclasses.replace(worker._config, delivery_limit=5)
    env = dataclasses.replace(envelope(CREATE), delivery_count=4)
    # When it arrives again
    decision = worker.process(env)
    # Then it is not executed, but failed with delivery_limit and dead-lettered
    assert client.calls == []
    assert decision.outcome == "failed"
    assert json.loads(decision.event or b"")["error"]["code"] == "delivery_limit"
    assert decision.dead_letter is not None
    assert decision.dead_letter.reason == "delivery_limit"


def test_at_the_delivery_limit_a_key_that_succeeded_republishes_its_stored_event(
    store: IdempotencyStore,
) -> None:
    # Given a command that succeeded but whose ack was lost, again and again
    client = ScriptedClient(None)
    worker = executor(client, store)
    first = worker.process(envelope(CREATE))
    worker._config = dataclasses.replace(worker._config, delivery_limit=5)
    # When it arrives at the delivery limit
    decision = worker.process(dataclasses.replace(envelope(CREATE), delivery_count=4))
    # Then the stored success goes out again, not CommandFailed(delivery_limit)
    assert decision.outcome == "succeeded" and decision.replayed
    assert decision.event == first.event
    assert decision.dead_letter is None
    assert len(client.calls) == 1


def test_a_delay_tier_copy_of_a_failed_command_repeats_the_recorded_failure(
    store: IdempotencyStore,
) -> None:
    # Given a command whose retries ran out, recorded as failed (the worker was killed
    # after scheduling a delayed retry and before acking, so a second copy lives on)
    exhausted = ScriptedClient(*[TransientError("503")] * 3)
    first = executor(exhausted, store).process(envelope(CREATE, attempts=2))
    assert first.outcome == "failed"
    # When the surviving copy comes back from its delay tier
    client = ScriptedClient(None)
    again = executor(client, store).process(envelope(CREATE, attempts=1))
    # Then it answers with the same failure event, without calling the API
    assert again.event == first.event
    assert again.dead_letter is not None
    assert client.calls == []


def test_a_fresh_publish_of_a_failed_key_runs_again(store: IdempotencyStore) -> None:
    failing = ScriptedClient(PermanentError(ErrorCode.AUTH_FAILED, "Bad username / password"))
    assert executor(failing, store).process(envelope(CREATE)).outcome == "failed"
    client = ScriptedClient(None)
    assert executor(client, store).process(envelope(CREATE)).outcome == "succeeded"
    # no read-back: a clean refusal proved nothing was applied
    assert client.calls == ["CreateCustomer"]


def invalid_delivery(redelivered: bool = False, correlation_id: str = "corr") -> Envelope:
    body = json.dumps(customer_command("x" * 70, key="k-invalid", email="nope")).encode()
    properties = pika.BasicProperties(
        correlation_id=correlation_id, headers={"x-delivery-count": 1} if redelivered else None
    )
    delivery = Delivery(None, 1, "CreateCustomer", properties, body, 0.0, redelivered)
    return read_delivery(delivery, 1 << 20).envelope


def test_a_redelivered_invalid_command_publishes_its_recorded_rejection_again(
    store: IdempotencyStore,
) -> None:
    # Given an invalid command rejected once, whose ack was lost with its channel
    client = ScriptedClient()
    first = executor(client, store).process(invalid_delivery())
    assert first.outcome == "rejected" and first.dead_letter is not None
    # When the broker redelivers it
    again = executor(client, store).process(invalid_delivery(redelivered=True))
    # Then the same event goes out again (same event_id), with its dead-letter copy
    assert again.event == first.event and again.replayed
    assert again.routing_key == first.routing_key == "CreateCustomer.rejected"
    assert again.dead_letter == first.dead_letter
    assert client.calls == []


def test_a_fresh_publish_or_another_caller_of_an_invalid_command_gets_its_own_rejection(
    store: IdempotencyStore,
) -> None:
    # Given an invalid command rejected once
    first = executor(ScriptedClient(), store).process(invalid_delivery())
    assert first.event is not None
    # When the same bytes are published again, and redelivered under another correlation id
    fresh = executor(ScriptedClient(), store).process(invalid_delivery())
    other = executor(ScriptedClient(), store).process(invalid_delivery(True, "corr-2"))
    # Then each is a rejection of its own: a new event_id, the caller's correlation id
    events = [json.loads(d.event or b"") for d in (first, fresh, other)]
    assert len({e["event_id"] for e in events}) == 3
    assert events[2]["correlation_id"] == "corr-2" and not other.replayed


class OutageOnComplete:
    """The real store, but recording an outcome fails once, as during a failover."""

    def __init__(self, store: IdempotencyStore) -> None:
        self._store = store
        self.failing = {"complete"}

    def __getattr__(self, name: str) -> Any:
        if name in self.failing:
            self.failing.discard(name)

            def fail(*_args: Any, **_kwargs: Any) -> Any:
                raise StoreError("connection refused")

            return fail
        return getattr(self._store, name)


def test_an_outcome_the_store_missed_is_recorded_on_the_next_try_without_a_second_call(
    store: IdempotencyStore,
) -> None:
    # Given a create whose call succeeded but whose outcome the store could not record
    ours = Customer(username="ada", email="ada@example.com")
    client = ScriptedClient(None, customers=[ours])
    worker = executor(client, OutageOnComplete(store))  # type: ignore[arg-type]
    with pytest.raises(StoreError):
        worker.process(envelope(CREATE))
    # When it is tried again, our own lease still on the key
    decision = worker.process(envelope(CREATE))
    # Then the API's answer is recorded and published: no second call, no read-back
    assert decision.outcome == "succeeded"
    assert client.calls == ["CreateCustomer"]
    record = store.get(CREATE["idempotency_key"])
    assert record is not None and record.event == decision.event


def test_a_key_left_leased_without_an_outcome_is_resolved_not_waited_out(
    store: IdempotencyStore,
) -> None:
    # Given a create whose call broke unexpectedly and whose key the store could not release
    ours = Customer(username="ada", email="ada@example.com")
    client = ScriptedClient(RuntimeError("a bug"), customers=[ours])
    failing = OutageOnComplete(store)
    failing.failing = {"release"}
    worker = executor(client, failing)  # type: ignore[arg-type]
    with pytest.raises(StoreError):
        worker.process(envelope(CREATE))
    # When it comes back, our own lease still on the key
    decision = worker.process(envelope(CREATE))
    # Then it is resolved by a read-back, not created twice nor sent round a delay tier
    assert decision.outcome == "succeeded"
    assert client.calls == ["CreateCustomer", "read-back"]
