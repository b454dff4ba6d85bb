"""Per-customer order on a bounded pool.

Commands for one customer run one at a time, in delivery order; commands for different
customers run in parallel on the pool. A command without a customer (a list of all
customers, an undecodable body) runs as soon as a thread is free.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

Task = Callable[[], Any]
Done = Callable[["Future[Any]"], None]


class KeyedSerialExecutor:
    def __init__(self, workers: int, thread_name_prefix: str = "command") -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=thread_name_prefix)
        self._lock = threading.Lock()
        # key -> tasks waiting behind the one running for that key
        self._waiting: dict[Hashable, deque[tuple[Task, Done]]] = {}
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
        future.add_done_callback(lambda f: self._finished(key, f, done))

    def _finished(self, key: Hashable | None, future: Future[Any], done: Done) -> None:
        try:
            done(future)
        finally:
            if key is not None:
                self._start_next(key)

    def _start_next(self, key: Hashable) -> None:
        with self._lock:
            queue = self._waiting.get(key)
            if not queue or self._closed:
                self._waiting.pop(key, None)
                return
            task, done = queue.popleft()
        self._start(key, task, done)

    def drop_waiting(self) -> int:
        """Forget tasks not yet started (their messages go back to the broker unacked)."""
        with self._lock:
            dropped = sum(len(q) for q in self._waiting.values())
            for queue in self._waiting.values():
                queue.clear()
            return dropped

    def shutdown(self, wait: bool) -> None:
        with self._lock:
            self._closed = True
            for queue in self._waiting.values():
                queue.clear()
        self._pool.shutdown(wait=wait, cancel_futures=True)
