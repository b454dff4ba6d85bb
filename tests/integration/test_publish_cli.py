"""`provisioner publish` against the real broker: validation, publishing, --wait, no broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

from tests.fixtures.broker import drain, queue_count
from worker.broker.topology import Topology
from worker.cli import main

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "Very-Secret-pw1"  # must never be printed
NO_EVENT_TIMEOUT_S = 0.3
COMMAND = {
    "type": "ResetPassword",
    "idempotency_key": "reset-1",
    "customer": "alice",
    "new_password": PASSWORD,
}


def write(tmp_path: Path, document: Any) -> str:
    path = tmp_path / "command.json"
    path.write_text(json.dumps(document))
    return str(path)


def publish_cli(topology: Topology, amqp_url: str, *args: str) -> int:
    return main(["publish", *args, "--amqp-url", amqp_url, "--prefix", topology.prefix])


class Responder:
    """Plays the worker: answers each command on its reply_to with the given event type."""

    def __init__(self, amqp_url: str, topology: Topology, event_type: str) -> None:
        self.connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
        self.channel = self.connection.channel()
        self.topology, self.event_type = topology, event_type
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.channel.basic_consume(self.topology.commands_queue, self._answer, auto_ack=True)
        while not self.stop.is_set():
            self.connection.process_data_events(time_limit=0.05)
        self.connection.close()

    def _answer(self, channel: Any, _method: Any, properties: Any, body: bytes) -> None:
        command = json.loads(body)
        unrelated = pika.BasicProperties(correlation_id="someone-else")
        channel.basic_publish("", properties.reply_to, b'{"type": "Noise"}', unrelated)
        event = {
            "type": self.event_type,
            "command_type": command["type"],
            "idempotency_key": command["idempotency_key"],
            "correlation_id": properties.correlation_id,
        }
        reply = pika.BasicProperties(correlation_id=properties.correlation_id)
        channel.basic_publish("", properties.reply_to, json.dumps(event).encode(), reply)


@pytest.fixture
def responder(amqp_url: str, topology: Topology, request: pytest.FixtureRequest) -> Iterator[Any]:
    started = Responder(amqp_url, topology, request.param)
    yield started
    started.stop.set()
    started.thread.join(timeout=10)


@pytest.mark.integration
def test_an_invalid_command_lists_every_problem_and_publishes_nothing(
    topology: Topology,
    amqp_url: str,
    broker_channel: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a command with two problems, one of them in a password
    bad = {**COMMAND, "idempotency_key": "", "new_password": "q9!"}
    # When it is published
    code = publish_cli(topology, amqp_url, write(tmp_path, bad))
    # Then each problem is on its own line, the exit code is 2 and nothing was sent
    out, err = capsys.readouterr()
    assert code == 2
    assert "$.idempotency_key: " in err.splitlines()[0]
    assert any(line.startswith("$.new_password: ") for line in err.splitlines())
    assert "q9!" not in out + err
    assert queue_count(broker_channel, topology.commands_queue) == 0


@pytest.mark.integration
def test_a_valid_command_is_published_as_given_and_only_its_id_printed(
    topology: Topology,
    amqp_url: str,
    broker_channel: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a valid command file
    path = write(tmp_path, COMMAND)
    # When it is published with a correlation id
    assert publish_cli(topology, amqp_url, path, "--correlation-id", "corr-1") == 0
    # Then the printed message id is the message's, and the body went out unchanged
    out, err = capsys.readouterr()
    [(properties, body)] = drain(broker_channel, topology.commands_queue)
    assert out.strip() == properties.message_id and PASSWORD not in out + err
    assert body == Path(path).read_bytes()
    assert properties.correlation_id == "corr-1"
    assert properties.delivery_mode == 2 and properties.content_type == "application/json"


@pytest.mark.integration
@pytest.mark.parametrize("responder", ["PasswordReset"], indirect=True)
def test_wait_prints_the_event_that_answers_it(
    topology: Topology,
    amqp_url: str,
    responder: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a worker stand-in that answers on reply_to
    # When a command is published with --wait --json
    code = publish_cli(topology, amqp_url, write(tmp_path, COMMAND), "--wait", "--json")
    # Then the answering event (not the noise) is printed and the exit code is 0
    document = json.loads(capsys.readouterr().out)
    assert code == 0
    assert document["event"]["type"] == "PasswordReset"
    assert document["event"]["correlation_id"] == document["correlation_id"]


@pytest.mark.integration
@pytest.mark.parametrize("responder", ["CommandFailed"], indirect=True)
def test_wait_exits_4_when_the_command_failed(
    topology: Topology, amqp_url: str, responder: Any, tmp_path: Path
) -> None:
    # Given a worker stand-in that reports failure; When waited for; Then exit code 4
    assert publish_cli(topology, amqp_url, write(tmp_path, COMMAND), "--wait") == 4


@pytest.mark.integration
def test_wait_exits_5_when_no_event_comes(
    topology: Topology,
    amqp_url: str,
    broker_channel: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given no worker at all
    # When a command is published with a short --wait
    path = write(tmp_path, COMMAND)
    code = publish_cli(topology, amqp_url, path, "--wait", "--timeout", str(NO_EVENT_TIMEOUT_S))
    # Then it times out with exit code 5, the command still queued for a worker
    assert code == 5
    assert "no event within" in capsys.readouterr().err
    assert queue_count(broker_channel, topology.commands_queue) == 1


@pytest.mark.parametrize("subcommand", [["publish", "FILE"], ["dlq", "list"], ["topology"]])
def test_no_broker_is_one_line_and_exit_3(tmp_path: Path, subcommand: list[str]) -> None:
    # Given a broker URL nothing answers at, with a password in it
    url = "amqp://guest:hunter22@127.0.0.1:1/%2F"
    args = [write(tmp_path, COMMAND) if arg == "FILE" else arg for arg in subcommand]
    argv = [sys.executable, "-m", "worker", *args, "--amqp-url", url]
    # When the operator runs the tool
    result = subprocess.run(
        argv,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    # Then one clear line, no traceback, no password, exit code 3
    assert result.returncode == 3
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "unreachable" in result.stderr and "hunter22" not in result.stderr
