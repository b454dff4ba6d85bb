"""Liveness and readiness, fed by the consumer loop, read by ``/healthz`` and ``/readyz``.

``Health(stall_after_s, *, clock=time.monotonic)`` is thread-safe:

- ``tick()``: the consumer loop calls it every turn, connected or not.
- ``set_connected(bool)``, ``set_consuming(bool)``: the broker state.
- ``live() -> (bool, reason)``: false only when the loop has not ticked for ``stall_after_s``;
  a broker outage never makes the worker "dead" (restarting it would not bring RabbitMQ back).
- ``ready() -> (bool, reason)``: live, connected and consuming.
- ``snapshot() -> dict``: the state for the probes' JSON bodies.

Before the first tick the start time counts as the last tick, so a slow start-up gets a full
``stall_after_s`` of grace.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


class Health:
    def __init__(
        self, stall_after_s: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._stall_after_s = stall_after_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last_tick = clock()
        self._ticked = False
        self._connected = False
        self._consuming = False

    def tick(self) -> None:
        now = self._clock()
        with self._lock:
            self._last_tick = now
            self._ticked = True

    def set_connected(self, connected: bool) -> None:
        with self._lock:
            self._connected = connected

    def set_consuming(self, consuming: bool) -> None:
        with self._lock:
            self._consuming = consuming

    def _since_tick_s(self) -> float:
        return max(0.0, self._clock() - self._last_tick)

    def live(self) -> tuple[bool, str]:
        with self._lock:
            since = self._since_tick_s()
        if since > self._stall_after_s:
            return False, f"consumer loop stalled: no tick for {since:.1f}s"
        return True, "consumer loop is running"

    def ready(self) -> tuple[bool, str]:
        alive, why = self.live()
        if not alive:
            return False, why
        with self._lock:
            connected, consuming = self._connected, self._consuming
        if not connected:
            return False, "not connected to the broker"
        if not consuming:
            return False, "not consuming"
        return True, "connected and consuming"

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            state: dict[str, Any] = {
                "connected": self._connected,
                "consuming": self._consuming,
                "ticked": self._ticked,
                "seconds_since_tick": round(self._since_tick_s(), 3),
                "stall_after_seconds": self._stall_after_s,
            }
        return state
