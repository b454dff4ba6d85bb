"""What the consumer tells operators about the broker: each call sets the log line, the
readiness and the metrics that go with one event together (README, "Operating").

``BrokerReport(health=None, metrics=None)``; either may be absent (tests, tools).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("worker.consumer")  # the consumer's lines, under its name


class BrokerReport:
    def __init__(self, health: Any = None, metrics: Any = None) -> None:
        self._health, self._metrics = health, metrics

    def tick(self) -> None:
        """The loop turned (connected or not): liveness."""
        if self._health is not None:
            self._health.tick()

    def state(self, *, connected: bool, consuming: bool) -> None:
        if self._health is not None:
            self._health.set_connected(connected)
            self._health.set_consuming(consuming)
        if self._metrics is not None:
            self._metrics.broker_connected_changed(connected)

    def channel_lost(self, kind: str, reason: str) -> None:
        fields = {"kind": kind, "reason": reason}
        log.warning("broker channel lost; reopening", extra={"fields": fields})
        if self._health is not None:
            self._health.set_consuming(False, reason)
        if self._metrics is not None:
            self._metrics.channel_lost(kind)

    def connection_lost(self, error: str) -> None:
        log.warning("broker connection lost", extra={"fields": {"error": error}})
        self.state(connected=False, consuming=False)

    def reconnecting(self) -> None:
        if self._metrics is not None:
            self._metrics.broker_reconnected()

    def blocked(self, reason: str) -> None:
        """A memory or disk alarm: no new work until unblocked (publishes would wait)."""
        fields = {"reason": reason}
        log.warning("broker blocked the connection; taking no new work", extra={"fields": fields})
        if self._health is not None:
            self._health.set_blocked(True, reason)
        if self._metrics is not None:
            self._metrics.broker_blocked_changed(True)

    def unblocked(self, held: int) -> None:
        log.info("broker unblocked the connection", extra={"fields": {"held": held}})
        if self._health is not None:
            self._health.set_blocked(False)
        if self._metrics is not None:
            self._metrics.broker_blocked_changed(False)

    def headers_ignored(self, names: tuple[str, ...], message_id: str | None) -> None:
        fields = {"headers": list(names), "message_id": message_id}
        log.warning("headers of a wrong type or size ignored", extra={"fields": fields})
        if self._metrics is not None:
            for name in names:
                self._metrics.header_ignored(name)
