"""What the pool thread hands back to the connection's thread, and the executor's settings.

An ``Envelope`` goes in (the decoded delivery), a ``Decision`` comes out (what to publish,
schedule or park); the consumer carries the decision out where pika allows it.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts import Command, InvalidCommand


@dataclass(frozen=True)
class Envelope:
    """What the consumer knows about a delivery, decoded on the connection's thread."""

    command: Command | None
    invalid: InvalidCommand | None
    correlation_id: str | None
    delayed_attempts: int  # delayed retries this message has been through
    delivery_count: int = 0  # redeliveries by the broker (crashes, lost channels)
    # An invalid command's: the store key its rejection is recorded under (worker.delivery).
    rejection_key: str | None = None


@dataclass(frozen=True)
class DeadLetter:
    reason: str
    error_code: str
    last_error: str


@dataclass(frozen=True)
class Decision:
    """What to do with the message. Exactly one of: publish ``event`` (terminal), or
    ``retry_in_s`` (no event yet). ``dead_letter`` accompanies failed/rejected events."""

    command_type: str
    outcome: str  # succeeded | failed | rejected | retry
    event: bytes | None = None
    routing_key: str | None = None
    retry_in_s: float | None = None
    dead_letter: DeadLetter | None = None
    replayed: bool = False
    error_code: str | None = None
    count_attempt: bool = True  # False when waiting for another worker's lease
    last_error: str | None = None


@dataclass(frozen=True)
class ExecutorConfig:
    owner: str
    retry_delays_s: tuple[float, ...]
    immediate_retries: int
    immediate_retry_budget_s: float
    lease_ttl_s: float
    dead_after_s: float
    fingerprint_key: bytes  # the store's (worker.store.FingerprintKeys)
    delivery_limit: int = 0  # 0: no limit known
    resolve_budget_s: float = 60.0  # see worker.config.RESOLVE_BUDGET_S
    legacy_fingerprint_key: bytes | None = None  # the API key, while legacy records remain
