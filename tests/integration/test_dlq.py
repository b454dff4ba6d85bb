"""`provisioner dlq` against the real broker: listing safely, filters, replay, purge."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.broker import drain, publish, queue_count
from tests.fixtures.wait import wait_until
from worker.broker import headers as h
from worker.broker.topology import Topology
from worker.cli import main

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "Sup3r-Secret-pw"
KILL_TEST_MESSAGES = 1500


def park(
    channel: Any,
    topology: Topology,
    command: dict[str, Any],
    *,
    code: str = "api_rejected",
    reason: str = "failed",
    failed_at: datetime | None = None,
    raw: bytes | None = None,
) -> str:
    """Dead-letter a command the way the worker does; returns its message id."""
    failed_at = failed_at or datetime.now(UTC)
    routing_key = str(command.get("type", "unknown"))
    headers = h.dead_letter_headers(
        reason, code, f"API said no ({code})", 2, failed_at, failed_at, routing_key
    )
    return publish(
        channel, topology.dead_letter_exchange, routing_key, raw or command, headers=headers
    )


def reset(key: str, customer: str = "alice") -> dict[str, Any]:
    return {
        "type": "ResetPassword",
        "idempotency_key": key,
        "customer": customer,
        "new_password": PASSWORD,
    }


def credential(key: str, customer: str = "bob") -> dict[str, Any]:
    return {
        "type": "AddCredential",
        "idempotency_key": key,
        "customer": customer,
        "credential_name": "smtp-user",
        "credential_password": PASSWORD,
    }


def dlq(topology: Topology, amqp_url: str, *args: str) -> int:
    return main(["dlq", *args, "--amqp-url", amqp_url, "--prefix", topology.prefix])


def ids_in(channel: Any, queue: str) -> list[str]:
    return [properties.message_id for properties, _ in drain(channel, queue)]


def test_list_and_show_mask_every_secret_without_consuming(
    topology: Topology, amqp_url: str, broker_channel: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given dead letters with passwords: valid JSON, and a truncated body that is not JSON
    first = park(broker_channel, topology, reset("k-1"))
    park(broker_channel, topology, credential("k-2"))
    broken = b'{"type": "ResetPassword", "new_password": "' + PASSWORD.encode() + b'", "idem'
    park(broker_channel, topology, {"type": "ResetPassword"}, raw=broken)
    # When the operator lists them (table and JSON) and shows each one
    assert dlq(topology, amqp_url, "list") == 0
    assert dlq(topology, amqp_url, "list", "--json") == 0
    for target in ("1", "k-2", "3"):
        assert dlq(topology, amqp_url, "show", target) == 0
    out, err = capsys.readouterr()
    # Then the listing names the commands but no password appears anywhere
    assert "k-1" in out and "AddCredential" in out and "api_rejected" in out
    assert PASSWORD not in out + err
    assert '"new_password": "***"' in out and '"credential_password": "***"' in out
    # And nothing was consumed: every message is still there, in order
    assert ids_in(broker_channel, topology.dead_letter_queue)[0] == first
    assert queue_count(broker_channel, topology.dead_letter_queue) == 0  # drained by ids_in


def test_list_json_filters_by_type_code_key_customer_and_time(
    topology: Topology, amqp_url: str, broker_channel: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given dead letters that differ in type, error code, customer and failure time
    old = datetime.now(UTC) - timedelta(days=2)
    park(broker_channel, topology, reset("k-1", "alice"), code="customer_not_found")
    park(broker_channel, topology, reset("k-2", "carol"), code="retries_exhausted")
    park(broker_channel, topology, credential("k-3"), code="retries_exhausted", failed_at=old)
    capsys.readouterr()

    def keys(*filters: str) -> list[str]:
        assert dlq(topology, amqp_url, "list", "--json", *filters) == 0
        document = json.loads(capsys.readouterr().out)
        assert document["total"] == 3
        return [m["idempotency_key"] for m in document["messages"]]

    # When the operator filters; Then exactly the matching messages are listed
    assert keys() == ["k-1", "k-2", "k-3"]
    assert keys("--type", "ResetPassword") == ["k-1", "k-2"]
    assert keys("--code", "retries_exhausted") == ["k-2", "k-3"]
    assert keys("--key", "k-3") == ["k-3"]
    assert keys("--customer", "carol") == ["k-2"]
    assert keys("--since", "1d") == ["k-1", "k-2"]
    assert keys("--since", (old - timedelta(hours=1)).isoformat(), "--type", "AddCredential") == [
        "k-3"
    ]


def test_a_message_the_broker_dead_lettered_is_listed_with_its_reason(
    prefix: str, amqp_url: str, broker_channel: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a commands queue with a delivery limit of 1 and a command rejected twice
    topology = Topology(prefix, (30.0,), 1)
    topology.declare(broker_channel)
    publish(broker_channel, topology.commands_exchange, "ResetPassword", reset("k-limit"))
    for _ in range(2):
        method = wait_until(
            lambda: broker_channel.basic_get(topology.commands_queue)[0], 10, "a delivery"
        )
        broker_channel.basic_reject(method.delivery_tag, requeue=True)
    wait_until(lambda: queue_count(broker_channel, topology.dead_letter_queue) == 1, 10, "dlx")
    # When it is listed
    assert dlq(topology, amqp_url, "list", "--json") == 0
    # Then its reason and code come from the broker's x-death header
    [row] = json.loads(capsys.readouterr().out)["messages"]
    assert (row["idempotency_key"], row["reason"], row["error_code"]) == (
        "k-limit",
        "delivery_limit",
        "delivery_limit",
    )
    assert row["last_failure"] is not None


def test_replay_moves_only_matching_messages_and_keeps_the_others_in_order(
    topology: Topology, amqp_url: str, broker_channel: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given five dead letters, two of them AddCredential
    ids = [
        park(broker_channel, topology, reset("k-1")),
        park(broker_channel, topology, credential("k-2")),
        park(broker_channel, topology, reset("k-3")),
        park(broker_channel, topology, credential("k-4")),
        park(broker_channel, topology, reset("k-5")),
    ]
    # When a dry run is made, then the AddCredential ones are replayed
    assert dlq(topology, amqp_url, "replay", "--type", "AddCredential", "--dry-run") == 0
    assert queue_count(broker_channel, topology.commands_queue) == 0
    assert dlq(topology, amqp_url, "replay", "--type", "AddCredential") == 0
    # Then the summary says so, and they are in the commands queue with a fresh budget
    assert "replayed 2, skipped 3, failed 0" in capsys.readouterr().out
    replayed = drain(broker_channel, topology.commands_queue)
    assert [p.message_id for p, _ in replayed] == [ids[1], ids[3]]
    for properties, body in replayed:
        assert h.replays_of(properties) == 1 and h.attempts_of(properties) == 0
        assert h.REASON not in properties.headers and h.LAST_FAILURE not in properties.headers
        assert json.loads(body)["credential_password"] == PASSWORD  # body untouched
    # And the others stayed, in their order
    assert ids_in(broker_channel, topology.dead_letter_queue) == [ids[0], ids[2], ids[4]]


def test_replay_killed_midway_then_rerun_loses_and_duplicates_nothing(
    topology: Topology, amqp_url: str, broker_channel: Any
) -> None:
    # Given many dead letters
    ids = [park(broker_channel, topology, reset(f"k-{i}")) for i in range(KILL_TEST_MESSAGES)]
    argv = [sys.executable, "-m", "worker", "dlq", "replay"]
    argv += ["--amqp-url", amqp_url, "--prefix", topology.prefix]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # When a replay is killed once some but not all have moved
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: queue_count(broker_channel, topology.commands_queue) > 0, 60, "moves")
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate()
    moved = queue_count(broker_channel, topology.commands_queue)
    assert 0 < moved < KILL_TEST_MESSAGES, "the kill must land midway"
    # And the replay is run again to completion
    rerun = subprocess.run(argv, env=env, capture_output=True, check=False, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert b"failed 0" in rerun.stdout and b"replaying" in rerun.stderr  # summary, progress
    # Then every message is exactly once in one of the two queues
    wait_until(
        lambda: queue_count(broker_channel, topology.commands_queue) == KILL_TEST_MESSAGES,
        30,
        "all replayed",
    )
    everywhere = ids_in(broker_channel, topology.commands_queue)
    everywhere += ids_in(broker_channel, topology.dead_letter_queue)
    assert Counter(everywhere) == Counter(ids)


def test_purge_asks_first_and_removes_only_matching_messages(
    topology: Topology,
    amqp_url: str,
    broker_channel: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given three dead letters
    ids = [
        park(broker_channel, topology, reset("k-1")),
        park(broker_channel, topology, credential("k-2")),
        park(broker_channel, topology, reset("k-3")),
    ]
    # When the operator purges ResetPassword but answers no
    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))
    assert dlq(topology, amqp_url, "purge", "--type", "ResetPassword") == 0
    assert queue_count(broker_channel, topology.dead_letter_queue) == 3
    # And then answers yes
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    assert dlq(topology, amqp_url, "purge", "--type", "ResetPassword") == 0
    # Then only those are gone, each named in the output
    out, err = capsys.readouterr()
    assert "[y/N]" in err and "removed 2 message(s)" in out
    assert "removed k-1 ResetPassword failed" in out and "k-2" not in out
    assert ids_in(broker_channel, topology.dead_letter_queue) == [ids[1]]


def test_purge_without_filter_still_asks_and_yes_skips_the_question(
    topology: Topology,
    amqp_url: str,
    broker_channel: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given two dead letters and an operator who just presses enter
    park(broker_channel, topology, reset("k-1"))
    park(broker_channel, topology, reset("k-2"))
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n"))
    # When purging everything; Then it asked and the default (no) kept both
    assert dlq(topology, amqp_url, "purge") == 0
    assert "EVERY message (2)" in capsys.readouterr().err
    assert queue_count(broker_channel, topology.dead_letter_queue) == 2
    # When purging with --yes; Then both are gone without a question
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert dlq(topology, amqp_url, "purge", "--yes") == 0
    assert "[y/N]" not in capsys.readouterr().err
    assert queue_count(broker_channel, topology.dead_letter_queue) == 0


def test_show_raw_refuses_a_pipe_unless_forced(
    topology: Topology, amqp_url: str, broker_channel: Any, capfdbinary: Any
) -> None:
    # Given a dead letter with a password in its body
    body = json.dumps(reset("k-raw")).encode()
    park(broker_channel, topology, reset("k-raw"), raw=body)
    # When the raw body is asked for into a pipe
    assert dlq(topology, amqp_url, "show", "k-raw", "--raw") == 2
    refused = capfdbinary.readouterr()
    # Then nothing is printed but a warning; with --force the exact bytes come out
    assert PASSWORD.encode() not in refused.out and b"secrets" in refused.err
    assert dlq(topology, amqp_url, "show", "k-raw", "--raw", "--force") == 0
    assert capfdbinary.readouterr().out == body


def test_replay_limit_and_a_broker_dead_letter_loses_its_death_marks(
    prefix: str, amqp_url: str, broker_channel: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a command the broker dead-lettered over the delivery limit, then a worker's one
    topology = Topology(prefix, (30.0,), 1)
    topology.declare(broker_channel)
    limited = publish(broker_channel, topology.commands_exchange, "ResetPassword", reset("k-a"))
    for _ in range(2):
        method = wait_until(
            lambda: broker_channel.basic_get(topology.commands_queue)[0], 10, "a delivery"
        )
        broker_channel.basic_reject(method.delivery_tag, requeue=True)
    wait_until(lambda: queue_count(broker_channel, topology.dead_letter_queue) == 1, 10, "dlx")
    parked = park(broker_channel, topology, reset("k-b"))
    # When one message is replayed
    assert dlq(topology, amqp_url, "replay", "--limit", "1") == 0
    # Then only the first moved, under its command type, without the broker's x-death
    assert "replayed 1, skipped 1, failed 0" in capsys.readouterr().out
    [(properties, _)] = drain(broker_channel, topology.commands_queue)
    assert properties.message_id == limited and h.replays_of(properties) == 1
    # (the commands queue stamps its own x-delivery-count on every delivery, from 0)
    assert set(properties.headers) - {"x-delivery-count"} == {h.REPLAYS}, properties.headers
    assert properties.headers.get("x-delivery-count", 0) == 0
    assert ids_in(broker_channel, topology.dead_letter_queue) == [parked]
