"""Life cycle: kill -9, SIGTERM, broker restart, slow API vs heartbeats, racing replicas."""

from __future__ import annotations

import signal
from collections import Counter
from typing import Any

import pytest

from tests.fixtures.broker_restart import restart_broker
from tests.fixtures.wait import wait_until
from tests.integration.harness import WorkerRig, customer_command

pytestmark = pytest.mark.integration


def applied_adds(rig: WorkerRig) -> Counter[str]:
    log = rig.sandbox.control_get("/_sandbox/log")
    entries: list[dict[str, Any]] = log.get("log", log)
    return Counter(e.get("user") or e.get("username") for e in entries if e.get("call") == "add")


def assert_each_key_succeeded_once(rig: WorkerRig, keys: list[str]) -> None:
    rig.drain_tap()
    for key in keys:
        events = rig.events_for(key)
        assert events, f"no event for {key}"
        assert {e["type"] for e in events} == {"CustomerCreated"}, events
        # a redelivery may repeat the event, but it is the very same event
        assert len({e["event_id"] for e in events}) == 1, events


def test_kill_9_with_200_in_flight_loses_and_repeats_nothing(rig: WorkerRig) -> None:
    # Given 200 creates in flight against a slow API
    rig.sandbox.control_post("/_sandbox/faults", {"latency_ms": 40})
    names = [f"k9-{i:03d}" for i in range(200)]
    keys = [f"key-{n}" for n in names]
    worker = rig.start_worker(PROVISIONER_CONCURRENCY="16")
    for name, key in zip(names, keys):
        rig.publish(customer_command(name, key=key))
    wait_until(lambda: len(rig.drain_tap()) >= 30, 60, "some progress before the kill")
    # When the worker is killed with SIGKILL and started again
    worker.kill()
    worker.wait(timeout=10)
    rig.start_worker(PROVISIONER_CONCURRENCY="16")
    # Then every key has its success event and every customer was created exactly once
    wait_until(
        lambda: all(rig.events_for(k) for k in keys), 120, "every key answered after restart"
    )
    assert_each_key_succeeded_once(rig, keys)
    adds = applied_adds(rig)
    assert set(adds) == set(names)
    assert max(adds.values()) == 1


def test_sigterm_finishes_in_flight_and_exits_0(rig: WorkerRig) -> None:
    # Given a worker busy with slow calls
    rig.sandbox.control_post("/_sandbox/faults", {"latency_ms": 300})
    worker = rig.start_worker(PROVISIONER_CONCURRENCY="4")
    keys = [f"term-{i}" for i in range(20)]
    for key in keys:
        rig.publish(customer_command(key, key=key))
    wait_until(lambda: len(rig.drain_tap()) >= 1, 30, "work under way")
    # When it receives SIGTERM
    assert rig.stop_worker(worker, signal.SIGTERM) == 0
    # Then what it started finished with an event, and the rest is back in the queue
    answered = {e["idempotency_key"] for e in rig.drain_tap()}
    assert answered, "in-flight commands should finish"
    wait_until(
        lambda: rig.depth(rig.topology.commands_queue) == len(keys) - len(answered),
        10,
        "unanswered commands back in the queue",
    )
    # And a new worker completes the rest without repeating anything
    rig.start_worker()
    wait_until(lambda: all(rig.events_for(k) for k in keys), 60, "all answered")
    assert_each_key_succeeded_once(rig, keys)
    assert max(applied_adds(rig).values()) == 1


def test_broker_restart_mid_stream(rig: WorkerRig) -> None:
    rig.sandbox.control_post("/_sandbox/faults", {"latency_ms": 20})
    rig.start_worker()
    keys = [f"br-{i}" for i in range(60)]
    for key in keys[:30]:
        rig.publish(customer_command(key, key=key))
    wait_until(lambda: len(rig.drain_tap()) >= 5, 30, "work under way")
    # When the broker restarts
    rig.connection.close()
    restart_broker()
    rig.reconnect()
    for key in keys[30:]:
        rig.publish(customer_command(key, key=key))
    # Then the worker reconnects by itself and every command ends in one success
    wait_until(lambda: all(rig.events_for(k) for k in keys), 90, "all answered after restart")
    assert_each_key_succeeded_once(rig, keys)
    assert max(applied_adds(rig).values()) == 1
    assert rig.processes[0].poll() is None


def test_slow_api_does_not_starve_heartbeats(rig: WorkerRig) -> None:
    # Given a 12-second API call and a 4-second heartbeat
    rig.sandbox.control_post("/_sandbox/faults", {"latency_ms": 12000})
    url = rig.amqp_url + ("&" if "?" in rig.amqp_url else "?") + "heartbeat=4"
    rig.start_worker(PROVISIONER_AMQP_URL=url, PROVISIONER_API_TIMEOUT="20")
    rig.publish(customer_command("slow", key="k-slow"))
    # Then the command succeeds on the first connection: no reconnect happened
    (event,) = rig.wait_events(1, 40, idempotency_key="k-slow")
    assert event["type"] == "CustomerCreated"
    assert "broker connection lost" not in rig.worker_log(rig.processes[0])


@pytest.mark.postgres
def test_two_workers_racing_on_postgres_run_each_key_once(pg_url: str, rig: WorkerRig) -> None:
    # Given two worker processes sharing one PostgreSQL store
    rig.sandbox.control_post("/_sandbox/faults", {"latency_ms": 20})
    for _ in range(2):
        rig.start_worker(PROVISIONER_STORE_URL=pg_url)
    # When every command is delivered twice, so both race for the same keys
    names = [f"pg-{i:03d}" for i in range(60)]
    for name in names * 2:
        rig.publish(customer_command(name, key=f"key-{name}"))
    keys = [f"key-{n}" for n in names]
    wait_until(lambda: all(len(rig.events_for(k)) >= 2 for k in keys), 90, "both deliveries")
    # Then each customer was created exactly once and both deliveries got the same event
    assert_each_key_succeeded_once(rig, keys)
    adds = applied_adds(rig)
    assert set(adds) == set(names) and max(adds.values()) == 1
