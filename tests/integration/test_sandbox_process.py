"""`provisioner-sandbox` as a process: help, start/stop, flags, and the state file."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import requests

from sandbox.server import SandboxServer
from tests.fixtures.sandbox import SandboxProcess, customer_form, reseller_url

REQUEST_TIMEOUT_S = 10.0
AUTH = {"api_user": "sandbox", "api_key": "sandbox-key"}
EVERY_FLAG = (
    "--host", "--port", "--api-user", "--api-key", "--state-file", "--latency-ms", "--error-rate",
    "--rate-429", "--retry-after-s", "--hang-rate", "--reset-rate", "--hang-s", "--seed",
)  # fmt: skip


def post(base_url: str, call: str, **params: str) -> requests.Response:
    return requests.post(
        reseller_url(base_url, call), data={**AUTH, **params}, timeout=REQUEST_TIMEOUT_S
    )


def test_help_lists_every_flag() -> None:
    # Given the installed console script
    # When its sandbox help is printed
    result = subprocess.run(
        [sys.executable, "-m", "sandbox", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    # Then every flag is documented
    for flag in EVERY_FLAG:
        assert flag in result.stdout, flag


def test_subprocess_serves_and_stops_cleanly_on_sigterm(sandbox_process: SandboxProcess) -> None:
    # Given a running sandbox process
    # When a customer is created through it
    created = post(sandbox_process.url, "add", **customer_form("proc@example.com"))
    # Then it answers, and SIGTERM stops it with exit code 0
    assert created.json() == {"message": "success"}
    assert sandbox_process.stop() == 0


def test_sigint_also_exits_zero() -> None:
    # Given a running sandbox process
    process = SandboxProcess()
    # When it gets SIGINT (Ctrl-C)
    process.process.send_signal(signal.SIGINT)
    # Then it exits 0
    assert process.stop() == 0


def test_fault_flags_apply_from_the_start() -> None:
    # Given a sandbox started with every call failing and a seed
    process = SandboxProcess("--error-rate", "1", "--seed", "3", "--latency-ms", "1")
    try:
        # When a call is made
        response = post(process.url, "manage", method="profile", task="get")
        faults = process.control_get("faults")
    finally:
        process.stop()
    # Then it is refused with a 503 and the settings show the flags
    assert response.status_code == 503
    assert (faults["error_rate"], faults["seed"], faults["latency_ms"]) == (1.0, 3, 1.0)


def test_bad_flag_value_is_one_line_and_exit_2() -> None:
    # Given an error rate out of range
    # When the sandbox is started
    result = subprocess.run(
        [sys.executable, "-m", "sandbox", "--port", "0", "--error-rate", "7"],
        capture_output=True,
        text=True,
        timeout=REQUEST_TIMEOUT_S,
    )
    # Then it refuses with one line naming the setting
    assert result.returncode == 2
    assert "error_rate" in result.stderr and "Traceback" not in result.stderr


def build_state(url: str) -> None:
    post(url, "add", **customer_form("keep@example.com"))
    post(url, "add", **customer_form("drop@example.com"))
    post(url, "delete", user="drop@example.com")
    post(url, "manage", method="disable", user="keep@example.com")
    post(
        url,
        "credential",
        user="keep@example.com",
        task="add",
        credential_name="smtp-1",
        credential_password="cred-secret",
    )
    post(
        url,
        "subuserManage",
        user="keep@example.com",
        method="apps",
        task="setup",
        name="footer",
        text="bye",
    )


def test_state_file_survives_a_restart(tmp_path: Path) -> None:
    # Given a sandbox process with a state file and some state
    state_file = str(tmp_path / "sandbox.db")
    first = SandboxProcess("--state-file", state_file)
    try:
        build_state(first.url)
    finally:
        assert first.stop() == 0
    # When a new process starts on the same file
    second = SandboxProcess("--state-file", state_file)
    try:
        listing = post(second.url, "manage", method="profile", task="get").json()
        settings = post(
            second.url,
            "subuserManage",
            user="keep@example.com",
            method="apps",
            task="getsettings",
            name="footer",
        ).json()
        duplicate_cred = post(
            second.url,
            "credential",
            user="keep@example.com",
            task="add",
            credential_name="smtp-1",
            credential_password="cred-secret",
        )
        readd_deleted = post(second.url, "add", **customer_form("drop@example.com"))
        log_length = len(second.control_get("log")["log"])
    finally:
        second.stop()
    # Then customers, flags, credentials, settings, deleted names and the log are all back
    assert [(c["username"], c["active"]) for c in listing] == [("keep@example.com", "false")]
    assert settings == {"settings": {"text": "bye"}}
    assert duplicate_cred.json()["errors"] == ["Credential already exists"]
    assert readd_deleted.json()["errors"] == ["Username already exists"]
    assert log_length == 6


def test_state_file_keeps_no_plain_password(tmp_path: Path) -> None:
    # Given an in-process sandbox with a state file
    state_file = tmp_path / "sandbox.db"
    with SandboxServer(state_file=state_file) as server:
        # When customers and credentials with passwords are created
        post(server.url, "add", **customer_form("plain@example.com"))
        post(
            server.url,
            "credential",
            user="plain@example.com",
            task="add",
            credential_name="smtp-1",
            credential_password="cred-secret",
        )
    # Then the file holds neither password in clear
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"secret-pw" not in raw and b"cred-secret" not in raw
    assert b"plain@example.com" in raw
