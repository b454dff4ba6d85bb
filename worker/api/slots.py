"""The API's concurrency: at most so many requests in flight, whatever the pool's size."""

from __future__ import annotations

import queue


class Slots:
    """At most ``count`` holders at once (``with slots:``). A queue of tokens rather than a
    ``threading.Semaphore``: taking and giving back one runs in C, not through a Python
    ``Condition``, on every request."""

    def __init__(self, count: int) -> None:
        self._count = count
        self._tokens: queue.SimpleQueue[None] = queue.SimpleQueue()
        for _ in range(count):
            self._tokens.put(None)

    def __enter__(self) -> None:
        self._tokens.get()

    def __exit__(self, *exc: object) -> None:
        self._tokens.put(None)

    def in_use(self) -> int:
        return self._count - self._tokens.qsize()
