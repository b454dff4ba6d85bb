"""A write handed from a pool thread to a store writer thread, and how its caller is woken.

Both stores' writers (SQLite's ``group_commit``, PostgreSQL's ``pg_batch``) take these from
a queue, run them in one transaction per batch, then release each ``done``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

C = TypeVar("C")


def held_lock() -> threading.Lock:
    lock = threading.Lock()
    lock.acquire()
    return lock


@dataclass
class Write(Generic[C]):
    work: Callable[[C], Any]
    # Released once the write is committed or failed. A bare lock rather than an Event: the
    # writer thread wakes every waiter of every batch, and an Event's Condition costs several
    # times the lock's own release on that thread.
    done: threading.Lock = field(default_factory=held_lock)
    result: Any = None
    error: BaseException | None = None
    waited: bool = True  # False: submitted without a caller waiting for the outcome
