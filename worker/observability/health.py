"""Liveness and readiness, fed by the consumer loop, read by ``/healthz`` and ``/readyz``.

``Health(stall_after_s, *, clock=time.monotonic)`` is thread-safe:

- ``tick()``: the consumer loop calls it every turn, connected or not.
- ``set_connected(bool)``, ``set_consuming(bool, why)``, ``set_blocked(bool, why)``: the
  broker state (``why``: the reason readiness gives while not consuming or blocked, e.g. the
  broker's reason for closing the channel, or its resource alarm).
- ``live() -> (bool, reason)``: false only when the loop has not ticked for ``stall_after_s``;
  a broker outage never makes the worker "dead" (restarting it would not bring RabbitMQ back).
- ``add_check(name, check)``: a part of the worker that must be well for it to be ready
  (partition mode: the sequencer, the partition leases, the partitions' consumers);
  ``check()`` returns why it is not, or None, and is asked at each probe.
- ``ready() -> (bool, reason)``: live, connected, consuming, not blocked, and every check
  well (the reason then names the part: ``sequencer: ...``).
- ``snapshot() -> dict``: the state for the probes' JSON bodies, with how many times the
  broker state went from ready to not ready and the last reason (a channel reopened within
  milliseconds still leaves its trace there).

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
        self._not_consuming_why = "not consuming"
        self._blocked_why: str | None = None
        self._unready_episodes = 0
        self._last_unready_reason: str | None = None
        self._checks: dict[str, Callable[[], str | None]] = {}

    def add_check(self, name: str, check: Callable[[], str | None]) -> None:
        self._checks[name] = check

    def tick(self) -> None:
        now = self._clock()
        with self._lock:
            self._last_tick = now
            self._ticked = True

    def set_connected(self, connected: bool) -> None:
        with self._lock:
            was = self._broker_reason()
            self._connected = connected
            self._note_change(was)

    def set_consuming(self, consuming: bool, why: str = "") -> None:
        with self._lock:
            was = self._broker_reason()
            self._consuming = consuming
            self._not_consuming_why = f"not consuming: {why}" if why else "not consuming"
            self._note_change(was)

    def set_blocked(self, blocked: bool, why: str = "") -> None:
        with self._lock:
            was = self._broker_reason()
            self._blocked_why = f"broker blocked the connection: {why or 'resource alarm'}"
            if not blocked:
                self._blocked_why = None
            self._note_change(was)

    def _broker_reason(self) -> str | None:
        """Why the broker state keeps the worker unready, or None (call with the lock)."""
        if not self._connected:
            return "not connected to the broker"
        if self._blocked_why is not None:
            return self._blocked_why
        if not self._consuming:
            return self._not_consuming_why
        return None

    def _note_change(self, was: str | None) -> None:
        now = self._broker_reason()
        if was is None and now is not None:
            self._unready_episodes += 1
            self._last_unready_reason = now

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
            broker_why = self._broker_reason()
        if broker_why is not None:
            return False, broker_why
        for name, problem in self._check_results().items():
            if problem is not None:
                return False, f"{name}: {problem}"
        return True, "connected and consuming"

    def _check_results(self) -> dict[str, str | None]:
        # Asked outside the lock: each check takes its part's own.
        return {name: check() for name, check in list(self._checks.items())}

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            state: dict[str, Any] = {
                "connected": self._connected,
                "consuming": self._consuming,
                "blocked": self._blocked_why is not None,
                "unready_episodes": self._unready_episodes,
                "last_unready_reason": self._last_unready_reason,
                "ticked": self._ticked,
                "seconds_since_tick": round(self._since_tick_s(), 3),
                "stall_after_seconds": self._stall_after_s,
            }
        if self._checks:
            state["checks"] = {n: why or "ok" for n, why in self._check_results().items()}
        return state


class Downtime:
    """Since when a part of the worker has been down, and why, for a readiness check: a part
    back within ``grace_s`` (a reconnection) never makes the worker unready.

    ``down(why)`` and ``up()`` come from the part's own thread, ``problem(what)`` from the
    probe's: the state is one tuple, replaced whole.
    """

    def __init__(self, grace_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._grace_s, self._clock = grace_s, clock
        self._state: tuple[float, str] | None = None

    def down(self, why: str | None = None) -> None:
        state = self._state
        since = state[0] if state is not None else self._clock()
        self._state = (since, why or (state[1] if state is not None else "starting"))

    def up(self) -> None:
        self._state = None

    def problem(self, what: str) -> str | None:
        state = self._state
        if state is None:
            return None
        down_s = self._clock() - state[0]
        return None if down_s < self._grace_s else f"{what} for {down_s:.0f}s: {state[1]}"
