"""One database connection per thread, closed when its thread ends or the store closes."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

from worker.store.records import StoreError

C = TypeVar("C")


class _Holder(Generic[C]):
    """Lives in one thread's local storage; its death (the thread ending) closes ``conn``."""

    __slots__ = ("__weakref__", "conn")

    def __init__(self, conn: C) -> None:
        self.conn = conn


class PerThreadConnections(Generic[C]):
    def __init__(self, connect: Callable[[], C], close: Callable[[C], None]) -> None:
        self._connect = connect
        self._close = close
        self._local = threading.local()
        self._lock = threading.Lock()
        self._live: dict[int, C] = {}
        self._closed = False

    def get(self) -> C:
        """This thread's connection, opened on first use."""
        if self._closed:
            raise StoreError("the store is closed")
        holder: _Holder[C] | None = getattr(self._local, "holder", None)
        if holder is None:
            holder = _Holder(self._connect())
            with self._lock:
                self._live[id(holder)] = holder.conn
            weakref.finalize(holder, self._forget, id(holder))
            self._local.holder = holder
        return holder.conn

    def discard(self) -> None:
        """Close this thread's connection (it broke); the next ``get`` opens a new one."""
        holder: _Holder[C] | None = getattr(self._local, "holder", None)
        self._local.holder = None
        if holder is not None:
            self._forget(id(holder))

    def open_count(self) -> int:
        with self._lock:
            return len(self._live)

    def close_all(self) -> None:
        self._closed = True
        with self._lock:
            connections = list(self._live.values())
            self._live.clear()
        for conn in connections:
            self._close(conn)

    def _forget(self, holder_id: int) -> None:
        with self._lock:
            conn = self._live.pop(holder_id, None)
        if conn is not None:
            self._close(conn)
