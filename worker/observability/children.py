"""What the supervisor's ``/metrics``, ``/healthz`` and ``/readyz`` answer for its processes.

Each worker process serves its own endpoints on a loopback port it reports at start-up; the
supervisor's server asks them on every request, so the answer is never older than the
request. ``/metrics`` merges every process's families into one page, each sample labelled
``process="<index>"``; a probe is ok only when every process answers ok.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

CHILD_TIMEOUT_S = 2.0  # a process that cannot answer its probe in this long counts as failing
PROCESS_LABEL = "process"


@dataclass
class ChildState:
    index: int
    pid: int | None = None
    port: int | None = None  # None until the process reported its server
    exited: int | None = None  # the exit code, once it is gone


class Children:
    """The supervisor's processes as one ``health`` and one ``metrics`` source."""

    def __init__(self, count: int) -> None:
        self._lock = threading.Lock()
        self._states = [ChildState(index) for index in range(count)]
        # Per thread: the server answers each probe on its own thread, and a probe's body
        # must carry its own report, not the one of a probe that ran beside it.
        self._reports = threading.local()

    def update(self, index: int, **changes: Any) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(self._states[index], name, value)

    def states(self) -> list[ChildState]:
        with self._lock:
            return [ChildState(**vars(state)) for state in self._states]

    # -- health (the interface of worker.observability.health.Health) ------------------

    def live(self) -> tuple[bool, str]:
        return self._probe("/healthz", starting_ok=True)

    def ready(self) -> tuple[bool, str]:
        return self._probe("/readyz", starting_ok=False)

    def snapshot(self) -> dict[str, Any]:
        """Each process's answer to the probe this thread just ran."""
        return {"processes": list(getattr(self._reports, "last", []))}

    def _probe(self, path: str, *, starting_ok: bool) -> tuple[bool, str]:
        report = [self._probe_one(state, path, starting_ok) for state in self.states()]
        self._reports.last = report
        failing = [entry for entry in report if not entry["ok"]]
        if failing:
            first = failing[0]
            return False, f"process {first['index']}: {first['reason']}"
        return True, f"{len(report)} processes ok"

    @staticmethod
    def _probe_one(state: ChildState, path: str, starting_ok: bool) -> dict[str, Any]:
        entry: dict[str, Any] = {"index": state.index, "pid": state.pid}
        if state.exited is not None:
            return {**entry, "ok": False, "reason": f"exited with code {state.exited}"}
        if state.port is None:
            return {**entry, "ok": starting_ok, "reason": "starting"}
        try:
            status, body = _get(state.port, path)
            reason = str(json.loads(body).get("reason", ""))
        except (OSError, http.client.HTTPException, ValueError) as exc:
            return {**entry, "ok": False, "reason": f"no answer ({type(exc).__name__})"}
        return {**entry, "ok": status == 200, "reason": reason}

    # -- metrics ------------------------------------------------------------------------

    def render(self) -> bytes:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_MergedCollector(self.states()))
        return generate_latest(registry)


class _MergedCollector:
    def __init__(self, states: list[ChildState]) -> None:
        self._states = states

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for state in self._states:
            if state.port is None or state.exited is not None:
                continue
            try:
                _status, body = _get(state.port, "/metrics")
            except (OSError, http.client.HTTPException):
                continue  # a process that is going away has no metrics to add
            for family in text_string_to_metric_families(body.decode()):
                target = merged.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type)
                )
                label = {PROCESS_LABEL: str(state.index)}
                target.samples.extend(
                    Sample(s.name, {**s.labels, **label}, s.value, s.timestamp, s.exemplar)
                    for s in family.samples
                )
        yield from merged.values()


def _get(port: int, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=CHILD_TIMEOUT_S)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()
