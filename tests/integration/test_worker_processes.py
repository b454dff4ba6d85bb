"""``provisioner run --processes N``: several worker processes under one supervisor."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.wait import wait_until
from tests.integration.harness import WorkerRig, customer_command

pytestmark = pytest.mark.integration

PROCESSES = 2


def probe(port: int, path: str) -> tuple[int, dict[str, Any]]:
    try:
        response = requests.get(f"http://127.0.0.1:{port}{path}", timeout=5)
    except requests.RequestException:
        return 0, {}
    return response.status_code, response.json()


def commands_by_process(port: int) -> Counter[str]:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    counts: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "provisioner_commands_total":
                counts[sample.labels["process"]] += int(sample.value)
    return counts


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rpartition(")")[2].split()[0] != "Z"


def start_supervised(rig: WorkerRig) -> tuple[Any, int, list[int]]:
    port = int(rig.env()["PROVISIONER_HTTP_PORT"])
    supervisor = rig.start_worker(
        PROVISIONER_HTTP_PORT=str(port),
        PROVISIONER_PROCESSES=str(PROCESSES),
        PROVISIONER_CONCURRENCY="4",
    )
    wait_until(lambda: len(rig.owners_of_partitions()) == PROCESSES, 30, "every process consuming")
    wait_until(lambda: probe(port, "/readyz")[0] == 200, 30, "the supervisor ready")
    pids = [int(p["pid"]) for p in probe(port, "/readyz")[1]["processes"]]
    return supervisor, port, pids


def test_processes_share_the_work_and_the_supervisor_serves_their_merged_view(
    rig: WorkerRig,
) -> None:
    # Given a supervisor running two worker processes, each consuming its share of partitions
    supervisor, port, children = start_supervised(rig)
    status, body = probe(port, "/readyz")
    assert status == 200
    assert [p["index"] for p in body["processes"]] == list(range(PROCESSES))
    assert all(p["ok"] for p in body["processes"])
    assert len(set(children)) == PROCESSES
    assert all(alive(pid) for pid in children)
    # When 60 creates are published
    rig.sandbox.control_post("/_sandbox/faults", {"latency_ms": 20})
    keys = [f"proc-{i:02d}" for i in range(60)]
    for key in keys:
        rig.publish(customer_command(key, key=key))
    # Then each key gets exactly one success event, the customer created once
    rig.wait_events(len(keys), 60)
    assert sorted(e["idempotency_key"] for e in rig.drain_tap()) == keys
    assert {e["type"] for e in rig.events} == {"CustomerCreated"}
    # And /metrics counts every command once, labelled by the process that ran it
    wait_until(lambda: sum(commands_by_process(port).values()) == len(keys), 10, "metrics")
    assert set(commands_by_process(port)) <= {str(i) for i in range(PROCESSES)}
    # When the supervisor gets SIGTERM; Then it and every process exit cleanly
    assert rig.stop_worker(supervisor) == 0
    assert not any(alive(pid) for pid in children)
    lines = [json.loads(line) for line in rig.worker_log(supervisor).splitlines() if line]
    assert sum(1 for line in lines if line.get("message") == "stopped") == PROCESSES


def test_a_crashed_process_stops_the_others_and_the_supervisor_fails(rig: WorkerRig) -> None:
    # Given a supervisor with two ready processes
    supervisor, _port, children = start_supervised(rig)
    # When one of them is killed with SIGKILL
    os.kill(children[0], signal.SIGKILL)
    # Then the supervisor stops the other and exits non-zero, for the orchestrator to restart
    assert supervisor.wait(timeout=60) == 1
    assert not any(alive(pid) for pid in children)
    log = rig.worker_log(supervisor)
    assert "worker process exited; stopping the others" in log


def test_processes_drain_and_exit_when_the_supervisor_is_killed(rig: WorkerRig) -> None:
    # Given a supervisor with two ready processes
    supervisor, _port, children = start_supervised(rig)
    # When the supervisor itself is killed with SIGKILL
    supervisor.kill()
    supervisor.wait(timeout=10)
    # Then each orphaned process notices, drains and exits on its own
    wait_until(lambda: not any(alive(pid) for pid in children), 30, "orphans gone")
    assert rig.consumers() == 0
