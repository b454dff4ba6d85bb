"""The supervisor's view of its processes: each probe answers with its own report."""

from __future__ import annotations

import threading
from typing import Any

from worker.observability.children import Children

WAIT_S = 10.0


def test_probes_running_side_by_side_each_report_their_own_processes() -> None:
    # Given two processes still starting (live: ok; ready: not yet)
    children = Children(2)
    both_probed = threading.Barrier(2, timeout=WAIT_S)
    seen: dict[str, Any] = {}

    def probe(name: str) -> None:
        ok, _reason = children.live() if name == "live" else children.ready()
        both_probed.wait()  # both probes ran before either body is built
        seen[name] = (ok, children.snapshot())

    # When a liveness and a readiness probe run at the same time
    threads = [threading.Thread(target=probe, args=(name,)) for name in ("live", "ready")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
    # Then each body shows the per-process outcome of its own probe
    live_ok, live_body = seen["live"]
    ready_ok, ready_body = seen["ready"]
    assert (live_ok, ready_ok) == (True, False)
    assert [p["ok"] for p in live_body["processes"]] == [True, True]
    assert [p["ok"] for p in ready_body["processes"]] == [False, False]
    assert {p["reason"] for p in ready_body["processes"]} == {"starting"}
