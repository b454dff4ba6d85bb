"""Fault injection and the control endpoint, over real HTTP."""

from __future__ import annotations

import json
import socket
import threading
import time
from urllib.parse import urlencode, urlsplit

import pytest
import requests

from sandbox.server import SandboxServer
from tests.fixtures.sandbox import customer_form, reseller_url
from tests.fixtures.wait import wait_until

REQUEST_TIMEOUT_S = 10.0
SHORT_CLIENT_TIMEOUT_S = 0.3
LONG_FAULT_S = 30.0  # far beyond the short client timeout; stop() cuts it short
SEEDED_CALLS = 30
SLOW_LATENCY_S = 1.0
STALL_BEYOND_LATENCY_S = 0.2
AUTH = {"api_user": "sandbox", "api_key": "sandbox-key"}


def add(
    sandbox: SandboxServer, username: str, timeout_s: float = REQUEST_TIMEOUT_S
) -> requests.Response:
    form = {**AUTH, **customer_form(username)}
    return requests.post(reseller_url(sandbox.url, "add"), data=form, timeout=timeout_s)


def manage(sandbox: SandboxServer, **params: str) -> requests.Response:
    return requests.post(
        reseller_url(sandbox.url, "manage"), data={**AUTH, **params}, timeout=REQUEST_TIMEOUT_S
    )


def test_next_n_5xx_refuses_without_applying_then_recovers(sandbox: SandboxServer) -> None:
    # Given the next two adds fail with a 5xx
    sandbox.control_post("faults", {"next": [{"call": "add", "fault": "5xx", "count": 2}]})
    # When three adds are sent
    statuses = [add(sandbox, f"n{i}@example.com").status_code for i in range(3)]
    # Then two 503s, one success; all three counted, one applied
    assert statuses == [503, 503, 200]
    assert [c.username for c in sandbox.state.customers.values()] == ["n2@example.com"]
    calls = sandbox.control_get("calls")
    assert (calls["calls"]["add"], calls["applied"]["add"]) == (3, 1)
    assert sandbox.control_get("faults")["next"] == []


def test_rule_task_narrows_to_the_task_or_method(sandbox: SandboxServer) -> None:
    # Given a customer and a 5xx rule for manage/enable only, with its own status
    add(sandbox, "t@example.com")
    rule = {"call": "manage", "task": "enable", "fault": "5xx", "status": 502}
    sandbox.control_post("faults", {"next": [rule]})
    # When a listing and then an enable are sent
    listing = manage(sandbox, method="profile", task="get")
    enable = manage(sandbox, method="enable", user="t@example.com")
    # Then only the enable is hit, with the rule's status
    assert (listing.status_code, enable.status_code) == (200, 502)


def test_429_carries_retry_after_and_the_documented_body(sandbox: SandboxServer) -> None:
    # Given a 429 rule and a Retry-After of 2 seconds
    sandbox.control_post("faults", {"retry_after_s": 2, "next": [{"call": "add", "fault": "429"}]})
    # When an add is sent
    response = add(sandbox, "r@example.com")
    # Then 429, Retry-After: 2, and the vocabulary's body; nothing applied
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"
    assert response.json() == {"message": "error", "errors": ["Too many requests"]}
    assert sandbox.state.customers == {}


def statuses_with_seed(sandbox: SandboxServer, seed: int) -> list[int]:
    sandbox.control_post("faults", {"error_rate": 0.3, "rate_429": 0.2, "seed": seed})
    statuses = [
        manage(sandbox, method="profile", task="get").status_code for _ in range(SEEDED_CALLS)
    ]
    sandbox.control("DELETE", "faults")
    return statuses


def test_seeded_rates_are_deterministic(sandbox: SandboxServer) -> None:
    # Given error and 429 rates with a seed
    # When the same run is made twice with the same seed, once with another
    first, second, other = (statuses_with_seed(sandbox, s) for s in (7, 7, 8))
    # Then the same seed replays the same statuses, which mix all three outcomes
    assert first == second
    assert {200, 429, 503} <= set(first)
    assert first != other


def test_latency_delays_every_call_past_a_short_timeout(sandbox: SandboxServer) -> None:
    # Given a latency far beyond the client's timeout
    sandbox.control_post("faults", {"latency_ms": LONG_FAULT_S * 1000})
    # When a call is made with a short timeout
    # Then the client times out
    with pytest.raises(requests.ReadTimeout):
        requests.post(
            reseller_url(sandbox.url, "manage"),
            data={**AUTH, "method": "profile", "task": "get"},
            timeout=SHORT_CLIENT_TIMEOUT_S,
        )
    assert sandbox.control_get("faults")["latency_ms"] == LONG_FAULT_S * 1000


def test_latency_counts_from_the_request_line_not_from_the_end_of_the_request(
    sandbox: SandboxServer,
) -> None:
    # Given a latency of one second, and a client that sends its request line, then stalls
    # for longer than that before sending the rest
    sandbox.control_post("faults", {"latency_ms": SLOW_LATENCY_S * 1000})
    body = urlencode({**AUTH, "method": "profile", "task": "get"}).encode()
    host, port = urlsplit(sandbox.url).hostname, urlsplit(sandbox.url).port
    path = urlsplit(reseller_url(sandbox.url, "manage")).path
    with socket.create_connection((host, port), timeout=REQUEST_TIMEOUT_S) as sock:
        started = time.monotonic()
        sock.sendall(f"POST {path} HTTP/1.1\r\n".encode())
        threading.Event().wait(SLOW_LATENCY_S + STALL_BEYOND_LATENCY_S)  # the slow client
        # When the rest of the request arrives
        rest = (
            f"Host: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        sock.sendall(rest + body)
        sent = time.monotonic()
        answer = sock.recv(65536)
        answered = time.monotonic()
    # Then the answer is not held for another full latency: the stall counted towards it
    assert answer.startswith(b"HTTP/1.1 200")
    assert answered - started >= SLOW_LATENCY_S
    assert answered - sent < SLOW_LATENCY_S


def test_hang_applies_the_change_then_answers_too_late(sandbox: SandboxServer) -> None:
    # Given the next add hangs for longer than the client waits
    sandbox.control_post(
        "faults", {"hang_s": LONG_FAULT_S, "next": [{"call": "add", "fault": "hang"}]}
    )
    # When the add is sent with a short timeout
    with pytest.raises(requests.ReadTimeout):
        add(sandbox, "hang@example.com", timeout_s=SHORT_CLIENT_TIMEOUT_S)
    # Then the customer was created anyway, exactly once
    wait_until(
        lambda: sandbox.state.find("hang@example.com"), REQUEST_TIMEOUT_S, "the hung add to apply"
    )
    assert [e["call"] for e in sandbox.control_get("log")["log"]] == ["add"]


def test_reset_applies_the_change_then_drops_the_connection(sandbox: SandboxServer) -> None:
    # Given a customer and a reset rule for credential add
    add(sandbox, "rst@example.com")
    sandbox.control_post(
        "faults", {"next": [{"call": "credential", "task": "add", "fault": "reset"}]}
    )
    form = {
        **AUTH,
        "user": "rst@example.com",
        "task": "add",
        "credential_name": "smtp-1",
        "credential_password": "cred-secret",
    }
    # When the credential is added
    with pytest.raises(requests.ConnectionError):
        requests.post(reseller_url(sandbox.url, "credential"), data=form, timeout=REQUEST_TIMEOUT_S)
    # Then the credential exists although no answer came
    customer = sandbox.state.find("rst@example.com")
    assert customer is not None and "smtp-1" in customer.credentials
    assert sandbox.control_get("faults")["injected"]["reset"] == 1


@pytest.mark.parametrize(
    ("fault", "status"), [("applied_5xx", 502), ("applied_garbled", 200)], ids=["502", "garbled"]
)
def test_applied_faults_apply_the_change_then_answer_badly(
    sandbox: SandboxServer, fault: str, status: int
) -> None:
    # Given the next add is applied, then answered with a 502 or a garbled 200
    rule = {"call": "add", "fault": fault, "status": 502 if fault == "applied_5xx" else None}
    sandbox.control_post("faults", {"next": [rule]})
    # When it is sent
    answer = add(sandbox, "applied@example.com")
    # Then the answer is bad, but the customer exists, created once
    assert answer.status_code == status
    if fault == "applied_garbled":
        with pytest.raises(ValueError):
            answer.json()
    assert sandbox.state.find("applied@example.com") is not None
    assert [e["call"] for e in sandbox.control_get("log")["log"]] == ["add"]


def test_control_rejects_bad_settings(sandbox: SandboxServer) -> None:
    # Given nothing
    base = sandbox.control_url
    # When invalid settings are posted
    bad = [
        requests.post(base + "faults", data=b"{not json", timeout=REQUEST_TIMEOUT_S),
        requests.post(base + "faults", json={"error_rate": 2}, timeout=REQUEST_TIMEOUT_S),
        requests.post(base + "faults", json={"colour": "red"}, timeout=REQUEST_TIMEOUT_S),
        requests.post(
            base + "faults",
            json={"next": [{"call": "add", "fault": "melt"}]},
            timeout=REQUEST_TIMEOUT_S,
        ),
        requests.get(base + "nothing-here", timeout=REQUEST_TIMEOUT_S),
    ]
    # Then each is a JSON error and the settings are unchanged
    assert [r.status_code for r in bad] == [400, 400, 400, 400, 404]
    assert all(r.json()["message"] == "error" for r in bad)
    assert sandbox.control_get("faults")["error_rate"] == 0.0


def test_reset_clears_state_counts_log_and_faults(sandbox: SandboxServer) -> None:
    # Given a customer, counts, a log and faults
    add(sandbox, "clear@example.com")
    sandbox.control_post("faults", {"latency_ms": 1, "next": [{"call": "add", "fault": "5xx"}]})
    # When the sandbox is reset
    sandbox.control_post("reset")
    # Then everything is empty again
    assert sandbox.control_get("state")["customers"] == []
    assert sandbox.control_get("calls") == {"calls": {}, "applied": {}}
    assert sandbox.control_get("log") == {"log": []}
    faults = sandbox.control_get("faults")
    assert (faults["latency_ms"], faults["next"]) == (0.0, [])


def test_log_and_state_dump_never_contain_a_password(sandbox: SandboxServer) -> None:
    # Given every call that carries a password
    add(sandbox, "sec@example.com")
    manage(
        sandbox,
        method="password",
        user="sec@example.com",
        password="reset-secret",
        confirm_password="reset-secret",
    )
    cred = {**AUTH, "user": "sec@example.com", "credential_name": "smtp-1"}
    url = reseller_url(sandbox.url, "credential")
    requests.post(
        url,
        data={**cred, "task": "add", "credential_password": "cred-secret"},
        timeout=REQUEST_TIMEOUT_S,
    )
    requests.post(
        url,
        data={**cred, "task": "edit", "new_credential_password": "cred-secret-2"},
        timeout=REQUEST_TIMEOUT_S,
    )
    # When the log and the state are dumped
    dumped = json.dumps(
        [sandbox.control_get("log"), sandbox.control_get("state"), sandbox.control_get("calls")]
    )
    # Then no password or API key appears, but the mutations do
    for secret in ("secret-pw", "reset-secret", "cred-secret", "sandbox-key"):
        assert secret not in dumped
    tasks = [(e["call"], e["task"]) for e in sandbox.control_get("log")["log"]]
    assert tasks == [
        ("add", None),
        ("manage", "password"),
        ("credential", "add"),
        ("credential", "edit"),
    ]
    assert '"***"' in dumped
