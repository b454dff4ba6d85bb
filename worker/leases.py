"""The leases this process's calls hold, and the thread that keeps them and the worker alive.

A key's lease and its customer's lease are taken by the claim with ``lease_ttl_s``; a call
may outlive that (a slow API, the resolve budget), and another worker would then take the
key over while it still runs. So every in-flight call registers what it holds here, and the
liveness thread renews those leases with each heartbeat. It has its own store (its own
connection, its own writer), so neither a busy pool nor a long purge can delay it.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from worker.store import IdempotencyStore

log = logging.getLogger(__name__)


class HeldLeases:
    """The keys and customers of the calls in flight in this process (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: Counter[str] = Counter()
        self._customers: Counter[str] = Counter()

    @contextmanager
    def holding(self, key: str, customer: str | None) -> Iterator[None]:
        with self._lock:
            self._keys[key] += 1
            if customer is not None:
                self._customers[customer] += 1
        try:
            yield
        finally:
            with self._lock:
                _let_go(self._keys, key)
                if customer is not None:
                    _let_go(self._customers, customer)

    def snapshot(self) -> tuple[list[str], list[str]]:
        with self._lock:
            return list(self._keys), list(self._customers)


def _let_go(held: Counter[str], name: str) -> None:
    held[name] -= 1
    if held[name] <= 0:
        del held[name]


class Liveness(threading.Thread):
    """Every ``heartbeat_s``: mark this worker alive and renew the leases its calls hold."""

    def __init__(
        self,
        store: IdempotencyStore,
        owner: str,
        leases: HeldLeases,
        *,
        heartbeat_s: float,
        lease_ttl_s: float,
    ) -> None:
        super().__init__(name="liveness", daemon=True)
        self._store, self._owner, self._leases = store, owner, leases
        self._heartbeat_s, self._lease_ttl_s = heartbeat_s, lease_ttl_s
        self.stopped = threading.Event()

    def beat(self) -> None:
        self._store.heartbeat(self._owner)
        keys, customers = self._leases.snapshot()
        if keys or customers:
            self._store.renew_leases(self._owner, keys, customers, self._lease_ttl_s)

    def run(self) -> None:
        while not self.stopped.wait(self._heartbeat_s):
            try:
                self.beat()
            except Exception:  # a store blip must not end the heartbeat
                log.exception("heartbeat or lease renewal failed")
