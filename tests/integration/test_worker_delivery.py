"""Delivery semantics: duplicates, conflicts, invalid input, retries, read-back, reply_to."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from tests.fixtures.wait import wait_until
from tests.integration.harness import WorkerRig, customer_command

pytestmark = pytest.mark.integration


def calls(rig: WorkerRig, name: str) -> int:
    counts: dict[str, Any] = rig.sandbox.control_get("/_sandbox/calls")
    value = counts.get("calls", counts).get(name, 0)
    return int(value)


def fault(rig: WorkerRig, call: str, kind: str, count: int, task: str | None = None) -> None:
    rig.sandbox.control_post(
        "/_sandbox/faults",
        {"next": [{"call": call, "task": task, "fault": kind, "count": count}], "hang_s": 2},
    )


def test_duplicate_delivery_calls_the_api_once_and_answers_each(rig: WorkerRig) -> None:
    # Given a worker and one CreateCustomer published twice with the same key
    rig.start_worker()
    command = customer_command("dup", key="k-dup")
    rig.publish(command)
    rig.wait_events(1, idempotency_key="k-dup")
    rig.publish(command)
    # Then there is an event for each delivery, the same event, but one API call
    first, second = rig.wait_events(2, idempotency_key="k-dup")
    assert first["event_id"] == second["event_id"]
    assert first["type"] == second["type"] == "CustomerCreated"
    assert calls(rig, "add") == 1


def test_same_key_with_another_payload_is_rejected_as_conflict(rig: WorkerRig) -> None:
    rig.start_worker()
    rig.publish(customer_command("conf", key="k-conf"))
    rig.wait_events(1, idempotency_key="k-conf")
    # When the same key arrives with a different payload
    rig.publish(customer_command("conf", key="k-conf", city="Elsewhere"))
    events = rig.wait_events(2, idempotency_key="k-conf")
    # Then the second is rejected with idempotency_conflict and parked in the dead-letter queue
    assert events[1]["type"] == "CommandRejected"
    assert events[1]["error"]["code"] == "idempotency_conflict"
    assert events[1]["_routing_key"] == "CreateCustomer.rejected"
    assert calls(rig, "add") == 1
    wait_until(lambda: rig.depth(rig.topology.dead_letter_queue) == 1, 10, "dead-letter entry")


def test_invalid_and_undecodable_bodies_are_rejected_without_api_calls(rig: WorkerRig) -> None:
    rig.start_worker()
    bad = customer_command("x" * 70, key="k-bad", email="not-an-email", password="short")
    rig.publish(bad)
    rig.publish(b"\xff\xfe not json at all")
    rig.publish({"type": "Nope", "idempotency_key": "k-nope"})
    # Then three rejections, each naming what is wrong, and no API call
    rejected = rig.wait_events(3, type="CommandRejected")
    by_key = {e["idempotency_key"]: e for e in rejected}
    message = by_key["k-bad"]["error"]["message"]
    for field in ("username", "email", "password"):
        assert field in message
    assert "short" not in json.dumps(by_key["k-bad"])
    assert by_key["k-bad"]["_routing_key"] == "CreateCustomer.rejected"
    assert {e["_routing_key"] for e in rejected} >= {"unknown.rejected"}
    assert all(e["error"]["code"] == "invalid_command" for e in rejected)
    assert calls(rig, "add") == 0
    # And every original body is kept in the dead-letter queue
    wait_until(lambda: rig.depth(rig.topology.dead_letter_queue) == 3, 10, "3 dead letters")
    bodies = [body for _m, _p, body in rig.get_all(rig.topology.dead_letter_queue)]
    assert b"\xff\xfe not json at all" in bodies


def test_5xx_twice_then_success(rig: WorkerRig) -> None:
    rig.start_worker()
    fault(rig, "add", "5xx", 2)
    rig.publish(customer_command("flaky", key="k-flaky"))
    (event,) = rig.wait_events(1, idempotency_key="k-flaky")
    assert event["type"] == "CustomerCreated"
    assert calls(rig, "add") == 3


@pytest.mark.parametrize("kind", ["hang", "reset"])
def test_ambiguous_create_is_read_back_not_repeated(rig: WorkerRig, kind: str) -> None:
    # Given the API applies the create, then never answers in time (or drops the connection)
    rig.start_worker()
    fault(rig, "add", kind, 1)
    rig.publish(customer_command("amb", key="k-amb"))
    # Then the worker reads back, sees its customer, and reports success: one effect
    (event,) = rig.wait_events(1, idempotency_key="k-amb")
    assert event["type"] == "CustomerCreated", event
    state = rig.sandbox.control_get("/_sandbox/log")
    adds = [e for e in state.get("log", state) if e.get("call") == "add"]
    assert len(adds) == 1


def test_ambiguous_add_credential_has_one_effect(rig: WorkerRig) -> None:
    rig.start_worker()
    rig.publish(customer_command("cred", key="k-c0"))
    rig.wait_events(1, idempotency_key="k-c0")
    fault(rig, "credential", "hang", 1, task="add")
    rig.publish(
        {
            "type": "AddCredential",
            "idempotency_key": "k-cred",
            "customer": "cred",
            "credential_name": "smtp-cred",
            "credential_password": "cred-secret",
        }
    )
    (event,) = rig.wait_events(1, idempotency_key="k-cred")
    assert event["type"] == "CredentialAdded", event
    log = rig.sandbox.control_get("/_sandbox/log")
    adds = [
        e for e in log.get("log", log) if e.get("call") == "credential" and e.get("task") == "add"
    ]
    assert len(adds) == 1


def test_permanent_failure_is_not_retried(rig: WorkerRig) -> None:
    rig.start_worker()
    rig.publish({"type": "EnableCustomer", "idempotency_key": "k-ghost", "customer": "ghost"})
    (event,) = rig.wait_events(1, idempotency_key="k-ghost")
    assert event["type"] == "CommandFailed"
    assert event["error"]["code"] == "customer_not_found"
    assert event["error"]["retryable"] is False
    assert event["_routing_key"] == "EnableCustomer.failed"
    assert calls(rig, "manage") == 1
    wait_until(lambda: rig.depth(rig.topology.dead_letter_queue) == 1, 10, "dead-letter entry")


def test_transient_errors_outlasting_every_retry_dead_letter_with_headers(rig: WorkerRig) -> None:
    # Given an API that answers 503 far more often than the worker retries
    rig.start_worker()
    fault(rig, "manage", "5xx", 1000)
    rig.publish(
        {"type": "DisableCustomer", "idempotency_key": "k-down", "customer": "c"},
        correlation_id="corr-down",
    )
    # Then after the immediate and both delayed retries: CommandFailed(retries_exhausted)
    (event,) = rig.wait_events(1, 30, idempotency_key="k-down")
    assert event["type"] == "CommandFailed"
    assert event["error"]["code"] == "retries_exhausted"
    assert event["error"]["retryable"] is True
    assert event["attempts"] == 3
    # And the dead-letter entry keeps the body and says why
    wait_until(lambda: rig.depth(rig.topology.dead_letter_queue) == 1, 10, "dead-letter entry")
    ((method, props, body),) = list(rig.get_all(rig.topology.dead_letter_queue))
    headers = props.headers
    assert json.loads(body)["idempotency_key"] == "k-down"
    assert props.correlation_id == "corr-down"
    assert headers["x-provisioner-reason"] == "retries_exhausted"
    assert headers["x-provisioner-error-code"] == "retries_exhausted"
    assert "503" in headers["x-provisioner-last-error"] or headers["x-provisioner-last-error"]
    assert headers["x-provisioner-attempts"] == 3
    assert headers["x-provisioner-first-failure"] <= headers["x-provisioner-last-failure"]
    assert headers["x-provisioner-original-routing-key"] == "DisableCustomer"
    assert method.routing_key == "DisableCustomer"


def test_reply_to_gets_the_same_event(rig: WorkerRig) -> None:
    # Given a caller waiting on its own reply queue
    rig.start_worker()
    reply = rig.channel.queue_declare("", exclusive=True).method.queue
    rig.publish(customer_command("rep", key="k-rep"), reply_to=reply, correlation_id="c-rep")
    (event,) = rig.wait_events(1, idempotency_key="k-rep")

    def reply_message() -> tuple[Any, Any, bytes] | None:
        got = rig.channel.basic_get(reply, auto_ack=True)
        return got if got[0] is not None else None

    # Then the reply copy is the same event with the same correlation id
    _method, props, body = wait_until(reply_message, 10, "reply_to copy")
    assert json.loads(body)["event_id"] == event["event_id"]
    assert props.correlation_id == "c-rep"


def profile(rig: WorkerRig, username: str) -> dict[str, Any]:
    response = requests.post(
        rig.sandbox.url.rstrip("/") + "/reseller.manage.json",
        data={
            "api_user": rig.sandbox.api_user,
            "api_key": rig.sandbox.api_key,
            "method": "profile",
            "task": "get",
            "username": username,
        },
        timeout=5,
    )
    rows: list[dict[str, Any]] = response.json()
    return next(row for row in rows if row["username"] == username)


def test_commands_for_one_customer_run_in_order(rig: WorkerRig) -> None:
    # Given two customers, and five profile updates each published interleaved
    rig.start_worker()
    for name in ("ord-a", "ord-b"):
        rig.publish(customer_command(name, key=f"create-{name}"))
    for i in range(5):
        for name in ("ord-a", "ord-b"):
            rig.publish(
                {
                    "type": "UpdateCustomerProfile",
                    "idempotency_key": f"{name}-{i}",
                    "customer": name,
                    "city": f"city-{i}",
                }
            )
    # When they have all run
    rig.wait_events(10, 30, type="CustomerProfileUpdated")
    # Then each customer's final state is its last update, and the updates ran in order
    assert profile(rig, "ord-a")["city"] == "city-4"
    assert profile(rig, "ord-b")["city"] == "city-4"
    order = [e["idempotency_key"] for e in rig.events if e["customer"] == "ord-a"]
    assert order == ["create-ord-a"] + [f"ord-a-{i}" for i in range(5)]
