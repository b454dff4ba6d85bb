"""``provisioner run --processes N``: N worker processes under one supervisor.

One worker process runs all its Python under one GIL: on a 2-core machine it tops out near
one core while the broker and the API leave the other idle. Several processes, like
dramatiq's ``--processes``, use the machine; each is a whole worker (its own broker
connection, ``concurrency`` API slots and their pool, store connections, worker id
``<worker_id>-<index>``), so everything a single worker guarantees holds per process, and
per-customer order holds per process as it does per replica.

- Children are spawned (fresh interpreters: none of the supervisor's threads, locks or sockets
  are inherited). Each serves its probes and metrics on a loopback port it reports through a
  pipe; the supervisor serves the merged view on ``http_port`` (``worker.observability.children``).
- SIGTERM/SIGINT go to every child, which drains as a single worker does; the supervisor
  exits 0 once all have exited cleanly.
- A child that exits on its own (a crash, the broker unreachable at start-up, the kernel's OOM
  killer) stops the others the same way, and the supervisor exits with that child's code (1
  for a signal): the orchestrator then restarts the pod whole, rather than it running on
  with fewer processes than configured.
- A child whose supervisor is gone (SIGKILL) drains and exits by itself.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from worker.config import Settings, drain_bound_s
from worker.exit_codes import EXIT_ERROR
from worker.observability.children import Children
from worker.observability.http import ObservabilityServer
from worker.process import run_one_process

log = logging.getLogger(__name__)

SUPERVISE_POLL_S = 0.1
STOP_MARGIN_S = 10.0  # beyond the drain bound before a child that has not exited is killed
CLEAN_STOP_CODES = (0, -signal.SIGTERM)  # a child stopped before its handlers were installed


def exit_code_of(code: int | None) -> int:
    """The supervisor's exit code for a failed child: its own, or 1 for a signal."""
    return code if code is not None and code > 0 else EXIT_ERROR


def child_settings(settings: Settings, index: int) -> Settings:
    return dataclasses.replace(
        settings, processes=1, http_port=0, worker_id=f"{settings.worker_id}-{index}"
    )


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._children = Children(settings.processes)
        self._stopping = threading.Event()
        self._processes: list[BaseProcess] = []
        self._reports: dict[Connection, int] = {}  # pipe -> child index
        self._exit_code = 0

    def request_stop(self, *_: Any) -> None:
        self._stopping.set()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        http = ObservabilityServer(
            "0.0.0.0", self._settings.http_port, self._children, self._children
        )
        http.start()
        try:
            self._start_children()
            self._supervise()
        finally:
            self._stop_children()
            http.stop()
        log.info("supervisor stopped", extra={"fields": {"exit_code": self._exit_code}})
        return self._exit_code

    def _start_children(self) -> None:
        context = multiprocessing.get_context("spawn")
        for index in range(self._settings.processes):
            ours, theirs = context.Pipe()
            process = context.Process(
                target=child_main,
                args=(child_settings(self._settings, index), theirs),
                name=f"provisioner-worker-{index}",
            )
            process.start()
            theirs.close()
            self._processes.append(process)
            self._reports[ours] = index
            self._children.update(index, pid=process.pid)
        log.info("worker processes started", extra={"fields": {"count": len(self._processes)}})

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            for ready in wait(list(self._reports), timeout=SUPERVISE_POLL_S):
                assert isinstance(ready, Connection)
                self._on_report(ready)
            for index, process in enumerate(self._processes):
                if process.exitcode is not None:
                    self._on_child_exit(index, process.exitcode)
                    return

    def _on_report(self, pipe: Connection) -> None:
        index = self._reports[pipe]
        try:
            kind, value = pipe.recv()
        except (EOFError, OSError):  # the child is gone; its exit code tells the rest
            del self._reports[pipe]
            return
        if kind == "listening":
            self._children.update(index, port=int(value))

    def _on_child_exit(self, index: int, code: int) -> None:
        # Exiting on its own is never normal: stop everything so the pod restarts whole.
        self._children.update(index, exited=code)
        self._exit_code = exit_code_of(code)
        fields = {"process": index, "exit_code": code}
        log.error("worker process exited; stopping the others", extra={"fields": fields})

    def _stop_children(self) -> None:
        for process in self._processes:
            if process.exitcode is None and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + drain_bound_s(self._settings) + STOP_MARGIN_S
        for index, process in enumerate(self._processes):
            process.join(max(0.0, deadline - time.monotonic()))
            if process.exitcode is None:
                log.error(
                    "worker process did not stop; killing it", extra={"fields": {"process": index}}
                )
                process.kill()
                process.join()
            code = process.exitcode
            if code not in CLEAN_STOP_CODES and self._exit_code == 0:
                self._exit_code = exit_code_of(code)
        for pipe in self._reports:
            pipe.close()


def child_main(settings: Settings, report: Connection) -> None:
    """A worker process under the supervisor (runs in the spawned interpreter)."""
    _drain_when_orphaned()
    code = run_one_process(
        settings,
        http_host="127.0.0.1",
        on_listening=lambda port: report.send(("listening", port)),
    )
    sys.exit(code)


def _drain_when_orphaned() -> None:
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        log.warning("supervisor gone; draining")
        os.kill(os.getpid(), signal.SIGTERM)  # the worker's own handler drains

    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()
