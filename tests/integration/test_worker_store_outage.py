"""A store outage under two ``provisioner run`` processes, customers' flows interleaved
(docs/ordering.md, "A store outage").

PostgreSQL is a private server (the shared one serves everybody else), stopped mid-flows:
for a moment (ridden out in place), and for longer than the partition leases' fencing time
(every unacked delivery goes back to its partition in order). A SQLite file locked by
another connection for longer than the busy timeout is the same outage. In every case each
customer's API calls run in publish order, each key has one effect and one terminal event,
nothing reaches the delivery limit or a dead letter, and the workers keep running.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from subprocess import Popen
from typing import Any

import pytest

from tests.fixtures.private_postgres import PrivatePostgres
from tests.fixtures.wait import wait_until
from tests.integration.harness import WorkerRig, customer_command
from tests.integration.test_order import (
    assert_every_flow_in_order,
    publish_interleaved,
    start_workers,
)

pytestmark = pytest.mark.integration

CUSTOMERS = 8
FENCED = '"partitions_fenced"'  # the log field of a channel closed for fenced partitions
MET = "store unavailable"  # logged by a command that meets the outage


def seen_in_every_log(rig: WorkerRig, workers: list[Popen[bytes]], text: str) -> bool:
    return all(text in rig.worker_log(proc) for proc in workers)


def assert_nothing_lost_doubled_or_parked(
    rig: WorkerRig, workers: list[Popen[bytes]], events: list[dict[str, Any]]
) -> None:
    """One terminal event per key (a replay repeats its event_id), no dead letter, no
    delivery limit, both processes still running (never restarted) and stopping cleanly."""
    event_ids: dict[str, set[str]] = defaultdict(set)
    for event in events:
        event_ids[event["idempotency_key"]].add(event["event_id"])
    assert {key: ids for key, ids in event_ids.items() if len(ids) != 1} == {}
    assert [e for e in rig.drain_tap() if "error" in e] == []
    assert rig.depth(rig.topology.dead_letter_queue) == 0
    assert [proc.pid for proc in workers if proc.poll() is not None] == []
    # And they stop cleanly, leaving the group (the next test's members are all alive)
    assert [rig.stop_worker(proc) for proc in workers] == [0, 0]


def run_through_outage(
    rig: WorkerRig, name: str, cut: Callable[[], None], restore: Callable[[], None], **env: str
) -> tuple[list[Popen[bytes]], list[dict[str, Any]]]:
    """Two processes work through interleaved flows; the store is cut once the API calls
    started and restored by ``restore`` (which waits for whatever it needs to)."""
    rig.env_overrides.update(env)  # the rig reads the partitions' owners from that store too
    workers = start_workers(rig, 2)
    rig.sandbox.control_post("/_sandbox/faults", {"latency_ms": 200})
    expected = publish_interleaved(rig, [f"{name}-{n}" for n in range(CUSTOMERS)])
    wait_until(lambda: rig.sandbox.log, 30, "the first API call")
    cut()
    restore()
    return workers, assert_every_flow_in_order(rig, expected)


def test_postgres_down_past_the_fencing_time_gives_deliveries_back_in_order(
    rig: WorkerRig, private_postgres: PrivatePostgres
) -> None:
    # Given two processes on PostgreSQL whose partition leases fence after 2 s without the
    # store (PROVISIONER_WORKER_DEAD_AFTER=4: the outage does not outlast their heartbeats),
    # working through interleaved flows
    def restore() -> None:
        # When PostgreSQL stays down until both processes fenced and closed their channels
        wait_until(lambda: seen_in_every_log(rig, workers_of(rig), FENCED), 30, "both fenced")
        private_postgres.start()

    workers, events = run_through_outage(
        rig,
        "fenced",
        private_postgres.stop,
        restore,
        PROVISIONER_STORE_URL=private_postgres.url,
        PROVISIONER_STORE_POOL_WAIT="1s",
        PROVISIONER_WORKER_DEAD_AFTER="4",
    )
    # Then every flow ran in publish order, each key once, nothing parked or restarted
    assert_nothing_lost_doubled_or_parked(rig, workers, events)


def test_a_short_postgres_outage_is_ridden_out_in_place(
    rig: WorkerRig, private_postgres: PrivatePostgres
) -> None:
    # Given two processes on PostgreSQL whose leases fence only after 10 s without the store
    def restore() -> None:
        # When PostgreSQL is back as soon as a command met the outage
        wait_until(lambda: any(MET in rig.worker_log(p) for p in workers_of(rig)), 30, "met")
        private_postgres.start()

    workers, events = run_through_outage(
        rig,
        "brief",
        private_postgres.stop,
        restore,
        PROVISIONER_STORE_URL=private_postgres.url,
        PROVISIONER_STORE_POOL_WAIT="1s",
        PROVISIONER_WORKER_DEAD_AFTER="20",
    )
    # Then the commands waited in place: no channel closed, every flow in order, each key once
    assert not any(FENCED in rig.worker_log(proc) for proc in workers)
    assert_nothing_lost_doubled_or_parked(rig, workers, events)


def test_a_sqlite_store_locked_past_the_busy_timeout_is_an_outage_that_keeps_order(
    rig: WorkerRig,
) -> None:
    # Given two processes sharing a SQLite file, waiting 0.5 s for a write lock, whose leases
    # fence after 2 s without the store
    path = Path(rig.env()["PROVISIONER_STORE_URL"].removeprefix("sqlite:///"))
    locker = sqlite3.connect(path, isolation_level=None, timeout=30)

    def lock() -> None:
        locker.execute("BEGIN EXCLUSIVE")

    def restore() -> None:
        # When another connection holds the write lock until both processes fenced
        wait_until(lambda: seen_in_every_log(rig, workers_of(rig), FENCED), 30, "both fenced")
        locker.execute("ROLLBACK")

    try:
        workers, events = run_through_outage(
            rig,
            "locked",
            lock,
            restore,
            PROVISIONER_STORE_BUSY_TIMEOUT="500ms",
            PROVISIONER_WORKER_DEAD_AFTER="4",
        )
    finally:
        locker.close()
    # Then every flow ran in publish order, each key once, nothing parked or restarted
    assert_nothing_lost_doubled_or_parked(rig, workers, events)


def workers_of(rig: WorkerRig) -> list[Popen[bytes]]:
    return rig.processes


def test_a_rename_meeting_a_locked_store_is_not_overtaken_by_the_customers_next_command(
    rig: WorkerRig,
) -> None:
    # Given a customer, and a worker whose SQLite store waits 0.5 s for a write lock
    old, new = "locked-rename-old", "locked-rename-new@example.com"
    (worker,) = start_workers(rig, 1, PROVISIONER_STORE_BUSY_TIMEOUT="500ms")
    rig.publish(customer_command(old))
    rig.wait_events(1, 30, idempotency_key=f"create-{old}")
    path = Path(rig.env()["PROVISIONER_STORE_URL"].removeprefix("sqlite:///"))
    locker = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        # When the rename reaches the sequencer while the file is locked (its alias cannot be
        # written), the disable of the new name right behind it
        locker.execute("BEGIN EXCLUSIVE")
        rename = {"type": "ChangeUsername", "idempotency_key": "lr", "customer": old}
        rig.publish({**rename, "new_username": new})
        rig.publish({"type": "DisableCustomer", "idempotency_key": "ld", "customer": new})
        wait_until(lambda: "sequencer lost" in rig.worker_log(worker), 30, "the alias unwritten")
        locker.execute("ROLLBACK")
    finally:
        locker.close()
    # Then the disable ran after the rename, and both succeeded
    renamed = rig.wait_events(1, 30, idempotency_key="lr")[0]
    disabled = rig.wait_events(1, 30, idempotency_key="ld")[0]
    assert (renamed["type"], disabled["type"]) == ("UsernameChanged", "CustomerDisabled")
    tasks = [e.get("task") for e in rig.sandbox.log]
    assert tasks.index("setUsername") < tasks.index("disable")
