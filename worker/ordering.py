"""Per-customer order on a bounded pool.

Commands for one customer run one at a time, in delivery order; commands for different
customers run in parallel on the pool. A command without a customer (a list of all
customers, an undecodable body) runs as soon as a thread is free.

A task may step aside (``SetAside``): it waits, not started, off its key's queue, so the
key's next tasks run; ``resume`` puts it back at the head of that queue (a returned
delivery waiting for its predecessor, ``worker.predecessors``).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

Task = Callable[[], Any]
Done = Callable[["Future[Any]"], None]


class SetAside(Exception):  # noqa: N818 (a signal to the pool, not an error)
    """Raised by a task: its ``done`` is not called, the key's next task starts, and the
    task waits under ``token`` until ``resume`` or ``drop_waiting``."""

    def __init__(self, token: Hashable) -> None:
        super().__init__("set aside")
        self.token = token


class KeyedSerialExecutor:
    def __init__(self, workers: int, thread_name_prefix: str = "command") -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=thread_name_prefix)
        self._lock = threading.Lock()
        # key -> tasks waiting behind the one running for that key
        self._waiting: dict[Hashable, deque[tuple[Task, Done]]] = {}
        # token -> (key, task, done) of tasks set aside, in the order they stepped aside
        self._aside: dict[Hashable, tuple[Hashable | None, Task, Done]] = {}
        # resumed before the pool saw them step aside (another thread released them)
        self._resumed_early: set[Hashable] = set()
        self._forgotten_early: set[Hashable] = set()  # given back before it stepped aside
        self._closed = False

    def submit(self, key: Hashable | None, task: Task, done: Done) -> None:
        """Run ``task`` after every earlier task with the same key; then call ``done``."""
        with self._lock:
            if self._closed:
                raise RuntimeError("executor is shut down")
            if key is not None:
                if key in self._waiting:
                    self._waiting[key].append((task, done))
                    return
                self._waiting[key] = deque()
        self._start(key, task, done)

    def _start(self, key: Hashable | None, task: Task, done: Done) -> None:
        future = self._pool.submit(task)
        future.add_done_callback(lambda f: self._finished(key, task, f, done))

    def _finished(self, key: Hashable | None, task: Task, future: Future[Any], done: Done) -> None:
        try:
            aside = None if future.cancelled() else future.exception()
            if isinstance(aside, SetAside):
                self._step_aside(aside.token, key, task, done)
            else:
                done(future)
        finally:
            if key is not None:
                self._start_next(key)

    def _step_aside(self, token: Hashable, key: Hashable | None, task: Task, done: Done) -> None:
        with self._lock:
            if self._closed:
                return
            if token in self._forgotten_early:
                self._forgotten_early.discard(token)
                return
            if token not in self._resumed_early:
                self._aside[token] = (key, task, done)
                return
            self._resumed_early.discard(token)
            if key is not None:  # still running this key: its next task
                self._waiting[key].appendleft((task, done))
                return
        self._start(key, task, done)

    def resume(self, tokens: list[Hashable]) -> int:
        """Tasks set aside, back at the head of their key's queue, in the order given
        (ahead of anything queued meanwhile); those no longer aside are skipped."""
        started: list[tuple[Hashable | None, Task, Done]] = []
        with self._lock:
            if self._closed:
                return 0
            entries = []
            for token in tokens:
                entry = self._aside.pop(token, None)
                if entry is None:
                    self._resumed_early.add(token)  # ``_step_aside`` is on its way
                else:
                    entries.append(entry)
            by_key: dict[Hashable | None, list[tuple[Task, Done]]] = {}
            for key, task, done in entries:
                by_key.setdefault(key, []).append((task, done))
            for key, tasks in by_key.items():
                if key is None:
                    started.extend((None, task, done) for task, done in tasks)
                elif key in self._waiting:
                    self._waiting[key].extendleft(reversed(tasks))
                else:
                    self._waiting[key] = deque(tasks[1:])
                    started.append((key, *tasks[0]))
        for key, task, done in started:
            self._start(key, task, done)
        return len(entries)

    def forget_aside(self, tokens: list[Hashable]) -> None:
        """Tasks set aside that will never run here (their deliveries given back)."""
        with self._lock:
            for token in tokens:
                if self._aside.pop(token, None) is None:
                    self._forgotten_early.add(token)  # ``_step_aside`` is on its way

    def _start_next(self, key: Hashable) -> None:
        with self._lock:
            queue = self._waiting.get(key)
            if not queue or self._closed:
                self._waiting.pop(key, None)
                return
            task, done = queue.popleft()
        self._start(key, task, done)

    def counts(self) -> dict[str, int]:
        """What the pool holds besides the running tasks, for a stalled drain's report."""
        with self._lock:
            return {
                "queued_behind_their_key": sum(len(q) for q in self._waiting.values()),
                "set_aside": len(self._aside),
                "queued_for_a_thread": self._pool._work_queue.qsize(),
            }

    def drop_waiting(self) -> int:
        """Forget tasks not yet started or set aside (their messages go back to the broker
        unacked)."""
        with self._lock:
            dropped = sum(len(q) for q in self._waiting.values()) + len(self._aside)
            for queue in self._waiting.values():
                queue.clear()
            self._aside.clear()
            self._resumed_early.clear()
            self._forgotten_early.clear()
            return dropped

    def shutdown(self, wait: bool) -> None:
        with self._lock:
            self._closed = True
            for queue in self._waiting.values():
                queue.clear()
            self._aside.clear()
        self._pool.shutdown(wait=wait, cancel_futures=True)
