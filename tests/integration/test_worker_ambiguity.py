"""Exactly once when answers are ambiguous: applied-then-502 and garbled answers, clean
collisions replayed from the dead-letter queue, an API-key rotation, and a SIGTERM while a
call runs. Real worker processes, real RabbitMQ, the real sandbox, both stores."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from tests.fixtures.wait import wait_until
from tests.integration.harness import WorkerRig, customer_command
from worker.cli import main

pytestmark = pytest.mark.integration

STORES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
BAD_ANSWERS = ["applied_5xx", "applied_garbled"]
GATEWAY_STATUS = 502


def store_env(request: pytest.FixtureRequest, store: str) -> dict[str, str]:
    if store == "sqlite":
        return {}
    return {"PROVISIONER_STORE_URL": request.getfixturevalue("pg_url")}


def inject(rig: WorkerRig, call: str, task: str | None, fault: str, **settings: Any) -> None:
    rule = {"call": call, "task": task, "fault": fault, "count": 1, "status": GATEWAY_STATUS}
    rig.sandbox.control_post("/_sandbox/faults", {"next": [rule], **settings})


def log_of(rig: WorkerRig) -> list[dict[str, Any]]:
    return list(rig.sandbox.control_get("/_sandbox/log")["log"])


def applied(rig: WorkerRig, call: str, task: str | None) -> int:
    return sum(1 for e in log_of(rig) if e["call"] == call and e.get("task") == task)


def sent(rig: WorkerRig, call: str, task: str | None = None) -> int:
    calls = rig.sandbox.control_get("/_sandbox/calls")["calls"]
    return int(calls.get(f"{call}/{task}" if task else call, 0))


def run(rig: WorkerRig, command: dict[str, Any]) -> dict[str, Any]:
    """Publish and wait for the command's (next) event."""
    key = command["idempotency_key"]
    before = len(rig.events_for(key))
    rig.publish(command)
    return rig.wait_events(before + 1, idempotency_key=key)[-1]


def credential(key: str, customer: str, name: str, password: str) -> dict[str, Any]:
    return {
        "type": "AddCredential",
        "idempotency_key": key,
        "customer": customer,
        "credential_name": name,
        "credential_password": password,
    }


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("fault", BAD_ANSWERS)
def test_each_non_idempotent_call_applied_then_answered_badly_succeeds_once(
    rig: WorkerRig, request: pytest.FixtureRequest, store: str, fault: str
) -> None:
    # Given a worker, and an API that applies each next call and then answers it with a
    # 502 from a gateway (or a garbled 200)
    rig.start_worker(**store_env(request, store))
    user, renamed = "amb@example.com", "amb2@example.com"
    steps: list[tuple[str, str | None, dict[str, Any], str]] = [
        ("add", None, customer_command(user, key="k-add", email=user), "CustomerCreated"),
        (
            "credential",
            "add",
            credential("k-cred", user, "smtp-amb", "cred-secret"),
            "CredentialAdded",
        ),
        (
            "credential",
            "delete",
            {
                "type": "DeleteCredential",
                "idempotency_key": "k-uncred",
                "customer": user,
                "credential_name": "smtp-amb",
            },
            "CredentialDeleted",
        ),
        (
            "manage",
            "setEmail",
            {
                "type": "ChangeEmail",
                "idempotency_key": "k-mail",
                "customer": user,
                "new_email": "new@example.com",
            },
            "EmailChanged",
        ),
        (
            "manage",
            "setUsername",
            {
                "type": "ChangeUsername",
                "idempotency_key": "k-rename",
                "customer": user,
                "new_username": renamed,
            },
            "UsernameChanged",
        ),
        (
            "delete",
            None,
            {"type": "DeleteCustomer", "idempotency_key": "k-del", "customer": renamed},
            "CustomerDeleted",
        ),
    ]
    for call, task, command, success in steps:
        inject(rig, call, task, fault)
        # When the command runs
        event = run(rig, command)
        # Then it succeeds, with its effect applied exactly once
        assert event["type"] == success, event
        assert applied(rig, call, task) == 1, (command["type"], log_of(rig))
    injected = rig.sandbox.control_get("/_sandbox/faults")["injected"]
    assert injected[fault] == len(steps)


@pytest.mark.parametrize("store", STORES)
def test_a_clean_already_exists_stays_failed_through_two_dead_letter_replays(
    rig: WorkerRig, request: pytest.FixtureRequest, store: str
) -> None:
    # Given a customer with a credential, and another customer
    rig.start_worker(**store_env(request, store))
    taken, mover = "taken@example.com", "mover@example.com"
    assert (
        run(rig, customer_command(taken, key="k-taken", email=taken))["type"] == "CustomerCreated"
    )
    given = credential("k-cred-0", taken, "smtp-taken", "first-secret")
    assert run(rig, given)["type"] == "CredentialAdded"
    assert (
        run(rig, customer_command(mover, key="k-mover", email=mover))["type"] == "CustomerCreated"
    )
    # And three commands colliding with them cleanly (the create even with the same email)
    colliding = [
        customer_command(taken, key="k-dup-create", email=taken),
        credential("k-dup-cred", taken, "smtp-taken", "other-secret"),
        {
            "type": "ChangeUsername",
            "idempotency_key": "k-dup-rename",
            "customer": mover,
            "new_username": taken,
        },
    ]
    for command in colliding:
        event = run(rig, command)
        assert (event["type"], event["error"]["code"]) == ("CommandFailed", "already_exists")
    wait_until(lambda: rig.depth(rig.topology.dead_letter_queue) == 3, 10, "3 dead letters")
    effects = log_of(rig)
    # When an operator replays the dead-letter queue, twice
    for round_ in (2, 3):
        assert main(["dlq", "replay", "--amqp-url", rig.amqp_url, "--prefix", rig.prefix]) == 0
        for command in colliding:
            events = rig.wait_events(round_, idempotency_key=command["idempotency_key"])
            # Then every replay fails the same way again
            assert [e["type"] for e in events] == ["CommandFailed"] * round_
            assert events[-1]["error"]["code"] == "already_exists"
        wait_until(lambda: rig.depth(rig.topology.dead_letter_queue) == 3, 10, "parked again")
    # And nothing was edited: no credential password, username or customer changed
    assert log_of(rig) == effects


@pytest.mark.parametrize("store", STORES)
def test_the_same_command_after_an_api_key_rotation_gets_the_stored_event(
    rig: WorkerRig, request: pytest.FixtureRequest, store: str
) -> None:
    # Given a command that succeeded under the old API key
    env = store_env(request, store)
    first = rig.start_worker(**env)
    command = customer_command("rot@example.com", key="k-rot", email="rot@example.com")
    original = run(rig, command)
    assert original["type"] == "CustomerCreated"
    assert rig.stop_worker(first) == 0
    # When the worker runs with a rotated key and the same command is published again
    rig.start_worker(PROVISIONER_API_KEY="rotated-key", **env)
    again = run(rig, command)
    # Then it is the stored event (not idempotency_conflict), and the API was not called
    assert again["event_id"] == original["event_id"], again
    assert sent(rig, "add") == 1


def test_sigterm_keeps_a_running_call_until_it_returns_though_another_worker_waits(
    rig: WorkerRig,
) -> None:
    # Given a worker with a 1 s drain timeout, and a customer
    env = {"PROVISIONER_DRAIN_TIMEOUT": "1", "PROVISIONER_API_TIMEOUT": "10"}
    first = rig.start_worker(**env)
    user = "drain@example.com"
    assert (
        run(rig, customer_command(user, key="k-drain-0", email=user))["type"] == "CustomerCreated"
    )
    # And an AddCredential the API applies and answers only after 4 s
    inject(rig, "credential", "add", "hang", hang_s=4)
    rig.publish(credential("k-drain", user, "smtp-drain", "cred-secret"))
    wait_until(lambda: sent(rig, "credential", "add") == 1, 10, "the add to be under way")
    # When the worker is told to stop, and a second worker starts at once
    first.send_signal(signal.SIGTERM)
    rig.start_worker(**env)
    # Then the first finishes the call and answers it before exiting 0
    assert first.wait(timeout=60) == 0
    (event,) = rig.wait_events(1, idempotency_key="k-drain")
    assert event["type"] == "CredentialAdded"
    # And the second never ran it: one add sent, one applied, nothing edited, one event id
    assert sent(rig, "credential", "add") == 1
    assert [e["task"] for e in log_of(rig) if e["call"] == "credential"] == ["add"]
    assert {e["event_id"] for e in rig.events_for("k-drain")} == {event["event_id"]}
    assert "drain timeout passed; waiting for the calls still running" in rig.worker_log(first)
