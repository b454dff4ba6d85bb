"""The broker topology against the real broker: declare, idempotence, --check, TTL tiers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tests.fixtures.broker import publish, queue_count
from tests.fixtures.wait import wait_until
from worker.broker import headers as h
from worker.broker.addresses import redact_url
from worker.broker.connection import BrokerAuthFailed, BrokerUnreachable, connect
from worker.broker.topology import Topology, tier_label
from worker.cli import main

FAST_TIER_S = 0.2  # a TTL tier small enough to expire while the test waits


def cli(amqp_url: str, prefix: str, *args: str) -> int:
    return main(["topology", *args, "--amqp-url", amqp_url, "--prefix", prefix])


@pytest.mark.integration
def test_declare_creates_everything_and_check_finds_it_in_place(
    amqp_url: str, prefix: str, broker_channel: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a prefix nothing was declared under
    topology = Topology(prefix, (30.0, 120.0, 600.0, 3600.0), 20)
    assert len(topology.check(broker_channel)) == 10
    # When the operator declares the topology twice (the second run must be a no-op)
    assert cli(amqp_url, prefix) == 0
    first = capsys.readouterr().out
    assert cli(amqp_url, prefix) == 0
    # Then every exchange and queue is there, with the retry tiers named by their delay
    assert f"declared exchange {prefix}.commands (topic)" in first
    assert f"declared queue {prefix}.retry.2m" in first
    assert "x-dead-letter-strategy=at-least-once" in first
    assert topology.check(broker_channel) == []
    assert cli(amqp_url, prefix, "--check") == 0
    assert "topology in place" in capsys.readouterr().out


@pytest.mark.integration
def test_check_reports_a_missing_queue_and_different_arguments(
    amqp_url: str, prefix: str, broker_channel: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a declared topology whose dead-letter queue was deleted
    assert cli(amqp_url, prefix) == 0
    broker_channel.queue_delete(f"{prefix}.dead-letter")
    capsys.readouterr()
    # When it is checked with another delivery limit than the one declared
    code = cli(amqp_url, prefix, "--check", "--delivery-limit", "7")
    # Then both problems are reported and the exit code says so
    out = capsys.readouterr().out
    assert code == 1
    assert f"queue {prefix}.dead-letter is missing" in out
    assert f"queue {prefix}.commands differs" in out and "x-delivery-limit" in out
    # And the check itself created nothing
    assert f"queue {prefix}.dead-letter is missing" in "\n".join(
        Topology(prefix, (30.0,), 20).check(broker_channel)
    )


@pytest.mark.integration
def test_check_knows_the_partitions_of_the_commands_queue(
    amqp_url: str, prefix: str, broker_channel: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a topology declared with four partitions, one of which was deleted since
    assert cli(amqp_url, prefix, "--partitions", "4") == 0
    declared = capsys.readouterr().out
    broker_channel.queue_delete(f"{prefix}.commands.p02")
    # When it is checked
    code = cli(amqp_url, prefix, "--check", "--partitions", "4")
    # Then the partition exchange and queues were declared, and the missing one is reported
    out = capsys.readouterr().out
    assert f"declared exchange {prefix}.partitions (direct)" in declared
    assert f"binding {prefix}.partitions --3--> {prefix}.commands.p03" in declared
    assert "x-single-active-consumer=True" in declared
    assert code == 1
    assert f"queue {prefix}.commands.p02 is missing" in out
    assert f"{prefix}.commands.p01" not in out


@pytest.mark.integration
def test_a_retry_tier_dead_letters_back_to_the_commands_queue(
    prefix: str, broker_channel: Any
) -> None:
    # Given a topology with one short delay tier
    topology = Topology(prefix, (FAST_TIER_S,), 5)
    topology.declare(broker_channel)
    # When a command is sent to that tier
    message_id = publish(
        broker_channel,
        topology.retry_exchange,
        topology.retry_routing_key(0),
        {"type": "EnableCustomer", "idempotency_key": "k", "customer": "c"},
        headers={h.ATTEMPTS: 1},
    )
    # Then after the TTL it is back in the commands queue, headers intact
    wait_until(lambda: queue_count(broker_channel, topology.commands_queue) == 1, 10, "expiry")
    _, properties, _ = broker_channel.basic_get(topology.commands_queue, auto_ack=True)
    assert properties.message_id == message_id
    assert h.attempts_of(properties) == 1
    assert queue_count(broker_channel, topology.retry_queue(0)) == 0


def test_names_and_labels_follow_the_prefix_and_delays() -> None:
    # Given a topology with mixed delay units
    topology = Topology("p", (0.5, 30, 120, 3600), 3)
    # Then tiers are labelled by their delay, addressable by index or by delay
    assert [tier_label(d) for d in (0.5, 30, 90, 120, 3600, 1.5)] == [
        "500ms", "30s", "90s", "2m", "1h", "1500ms",
    ]  # fmt: skip
    assert topology.retry_queue(1) == "p.retry.30s"
    assert topology.retry_queue(120.0) == "p.retry.2m"
    assert topology.dead_letter_queue == "p.dead-letter"


def test_replay_headers_reset_attempts_and_drop_death_marks() -> None:
    # Given the headers of a message the worker dead-lettered after a broker death
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    headers = {
        **h.dead_letter_headers("retries_exhausted", "retries_exhausted", "boom", 4, now, now, "X"),
        h.REPLAYS: 1,
        "x-death": [{"reason": "expired"}],
        "tenant": "acme",
    }
    # When it is prepared for a replay
    replayed = h.for_replay(headers)
    # Then it counts one more replay, starts its retries afresh and keeps the rest
    assert headers[h.FIRST_FAILURE] == "2026-01-02T03:04:05.000+00:00"
    assert replayed == {h.REPLAYS: 2, h.ORIGINAL_ROUTING_KEY: "X", "tenant": "acme"}


@pytest.mark.integration
def test_connect_redacts_the_password_and_does_not_retry_bad_credentials(amqp_url: str) -> None:
    # Given a port nothing listens on, and the right broker with a wrong password
    unreachable = "amqp://guest:hunter22@127.0.0.1:1/%2F"
    wrong_password = amqp_url.replace("guest:guest@", "guest:not-the-password@")
    # Then each fails with its own error, and neither shows the password
    with pytest.raises(BrokerUnreachable) as unreachable_error:
        connect(unreachable, attempts=2, max_backoff_s=0.01)
    with pytest.raises(BrokerAuthFailed) as auth_error:
        connect(wrong_password, attempts=5, max_backoff_s=60.0)
    assert "hunter22" not in str(unreachable_error.value)
    assert "guest:***@127.0.0.1:1" in str(unreachable_error.value)
    assert "not-the-password" not in str(auth_error.value)
    assert redact_url("amqp://u:p%40ss@h/") == "amqp://u:***@h/"
