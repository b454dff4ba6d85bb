"""/readyz in partition mode names the order part that keeps a worker from its commands."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
import requests

from tests.fixtures.wait import wait_until
from tests.integration.harness import WorkerRig

pytestmark = pytest.mark.integration


def readyz(port: str) -> tuple[int, dict[str, Any]]:
    answer = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
    return answer.status_code, answer.json()


def test_a_worker_cut_off_from_its_store_says_it_fenced_itself(rig: WorkerRig) -> None:
    # Given a ready worker owning every partition and the sequencer lease (fencing after 1 s)
    port = rig.env()["PROVISIONER_HTTP_PORT"]
    proc = rig.start_worker(PROVISIONER_HTTP_PORT=port)
    wait_until(lambda: readyz(port)[0] == 200, 20, "ready")
    wait_until(rig.owners_of_partitions, 20, "every partition owned")
    # When another connection holds the store's write lock (the lease rounds cannot write)
    lock = sqlite3.connect(rig.tmp_path / "store.db", isolation_level=None, timeout=10)
    try:
        lock.execute("BEGIN EXCLUSIVE")

        def unready() -> dict[str, Any] | None:
            code, body = readyz(port)
            return body if code == 503 else None

        # Then /readyz is 503: the partition leases were not renewed, and the worker lives
        body = wait_until(unready, 20, "unready")
        assert body["reason"].startswith("partition leases: fenced: "), body
        assert "and the sequencer lease not renewed for" in body["reason"]
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    # And once the store answers again, it is ready again
    wait_until(lambda: readyz(port)[0] == 200, 30, "ready again")
    assert proc.poll() is None
