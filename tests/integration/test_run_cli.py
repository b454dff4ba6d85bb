"""`provisioner run` refuses bad configuration and an unreachable broker with one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.rigs import free_port

CREDENTIALS = {"PROVISIONER_API_USER": "u", "PROVISIONER_API_KEY": "k"}


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("PROVISIONER_")}
    full.update(CREDENTIALS)
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "worker", "run", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"PROVISIONER_CONCURRENCY": "lots"}, "PROVISIONER_CONCURRENCY"),
        ({"PROVISIONER_API_NAMING": "v3"}, "PROVISIONER_API_NAMING"),
        ({"PROVISIONER_RETRY_DELAYS": "30s,soon"}, "PROVISIONER_RETRY_DELAYS"),
        ({"PROVISIONER_STORE_URL": "mysql://x"}, "PROVISIONER_STORE_URL"),
        ({"PROVISIONER_AMQP_URL": "http://x"}, "PROVISIONER_AMQP_URL"),
        ({"PROVISIONER_API_KEY_FILE": "/nonexistent/key"}, "PROVISIONER_API_KEY_FILE"),
        ({"PROVISIONER_API_KEY": ""}, "PROVISIONER_API_KEY"),
        ({"PROVISIONER_PROCESSES": "0"}, "PROVISIONER_PROCESSES"),
        ({"PROVISIONER_PROCESSES": "65"}, "PROVISIONER_PROCESSES"),
        (
            {"PROVISIONER_PROCESSES": "2", "PROVISIONER_STORE_URL": "sqlite:///:memory:"},
            "PROVISIONER_PROCESSES",
        ),
    ],
)
def test_bad_configuration_is_one_line_naming_the_variable(
    env: dict[str, str], variable: str
) -> None:
    result = run(env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert "Traceback" not in result.stderr


def test_a_flag_wins_over_the_environment() -> None:
    result = run({"PROVISIONER_CONCURRENCY": "4"}, "--concurrency", "zero")
    assert result.returncode == 2
    assert "PROVISIONER_CONCURRENCY" in result.stderr


def test_secret_values_are_not_echoed_in_configuration_errors(tmp_path: Path) -> None:
    result = run({"PROVISIONER_AMQP_URL": "ftp://user:hunter22@host/"})
    assert result.returncode == 2
    assert "hunter22" not in result.stderr


def unreachable_broker(tmp_path: Path) -> dict[str, str]:
    """A broker URL (with a password) where nothing listens, and few quick attempts."""
    return {
        "PROVISIONER_AMQP_URL": f"amqp://guest:topsecret@127.0.0.1:{free_port()}/%2F",
        "PROVISIONER_STARTUP_CONNECT_ATTEMPTS": "2",
        "PROVISIONER_RECONNECT_MAX": "0.2",
        "PROVISIONER_STORE_URL": f"sqlite:///{tmp_path / 's.db'}",
        "PROVISIONER_HTTP_PORT": str(free_port()),
    }


def test_unreachable_broker_at_start_exits_3_with_one_line(tmp_path: Path) -> None:
    # Given nothing listens on the broker port
    result = run(unreachable_broker(tmp_path))
    # Then it gives up after its attempts, says so on one line, and hides the password
    assert result.returncode == 3, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "unreachable" in last
    assert "topsecret" not in result.stderr
    assert "Traceback" not in result.stderr


def test_with_several_processes_an_unreachable_broker_still_exits_3(tmp_path: Path) -> None:
    # Given nothing listens on the broker port, and two worker processes asked for
    env = unreachable_broker(tmp_path)
    result = run({**env, "PROVISIONER_PROCESSES": "2", "PROVISIONER_LOG_FORMAT": "text"})
    # Then the supervisor exits with the child's code, the reason said, the password hidden
    assert result.returncode == 3, result.stderr
    # (stderr in every message: this test failed once in 5 suite runs, unexplained)
    assert "provisioner: broker:" in result.stderr, result.stderr
    assert "unreachable" in result.stderr, result.stderr
    assert "topsecret" not in result.stderr
    assert "Traceback" not in result.stderr, result.stderr
