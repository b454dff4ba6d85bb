"""One place that tells the outside world how each command ended: log line and metrics.

Called on the connection's thread after the ack, so what it reports really happened.
"""

from __future__ import annotations

import logging
from typing import Any

from contracts import command_customer
from worker.decision import Decision, Envelope
from worker.observability.logs import log_command_outcome

log = logging.getLogger("worker.outcome")


def _identity(envelope: Envelope) -> dict[str, Any]:
    command, invalid = envelope.command, envelope.invalid
    if command is not None:
        return {
            "command_type": type(command).__name__,
            "idempotency_key": command.idempotency_key,
            "customer": command_customer(command),
        }
    return {
        "command_type": (invalid.command_type if invalid else None) or "unknown",
        "idempotency_key": invalid.idempotency_key if invalid else None,
        "customer": invalid.customer if invalid else None,
    }


class OutcomeReporter:
    def __init__(self, metrics: Any = None) -> None:
        self._metrics = metrics

    def command_done(self, envelope: Envelope, decision: Decision, duration_s: float) -> None:
        ident = _identity(envelope)
        log_command_outcome(
            log,
            **ident,
            correlation_id=envelope.correlation_id,
            attempt=envelope.delayed_attempts + 1,
            outcome=decision.outcome + (" (replayed)" if decision.replayed else ""),
            error_code=decision.error_code if decision.outcome != "retry" else None,
            duration_s=duration_s,
        )
        if self._metrics is None:
            return
        self._metrics.command_finished(ident["command_type"], decision.outcome, duration_s)
        if decision.dead_letter is not None:
            self._metrics.dead_lettered(decision.dead_letter.reason)

    def command_crashed(self, envelope: Envelope, exc: BaseException) -> None:
        ident = _identity(envelope)
        log.error(
            "command crashed; retried later or parked",
            exc_info=exc,
            extra={"fields": {**ident, "correlation_id": envelope.correlation_id}},
        )
        if self._metrics is not None:
            self._metrics.command_finished(ident["command_type"], "error", 0.0)
