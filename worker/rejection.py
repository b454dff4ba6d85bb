"""An invalid command's rejection, recorded in the idempotency store under the delivery's
``rejection_key`` (``worker.delivery``) and replayed from there.

The channel may die after the CommandRejected went out and before the ack: the redelivery
must publish that event again (same ``event_id``, as a replayed success or failure does),
not a second rejection. A fresh publish of the same bytes is rejected anew, as a failed key
runs again.
"""

from __future__ import annotations

from collections.abc import Callable

from worker import terminal
from worker.decision import Decision, Envelope, ExecutorConfig
from worker.store import ClaimStatus, IdempotencyStore


def reject_invalid(
    store: IdempotencyStore,
    config: ExecutorConfig,
    envelope: Envelope,
    count: Callable[[str, str], None],
) -> Decision:
    """The decision for ``envelope.invalid``; ``count("idempotent_replay", type)`` on a replay."""
    assert envelope.invalid is not None
    key = envelope.rejection_key
    if key is not None and (envelope.delivery_count or envelope.delayed_attempts):
        record = store.get(key)
        stored = record.event if record is not None else None
        decided = terminal.stored_rejection(stored) if stored is not None else None
        if decided is not None:
            count("idempotent_replay", decided.command_type)
            return decided
    decision = terminal.rejected_invalid(envelope, envelope.invalid)
    if key is not None and decision.event is not None:
        _record(store, config, key, decision.event)
    return decision


def _record(store: IdempotencyStore, config: ExecutorConfig, key: str, event: bytes) -> None:
    # Decided without a call: the lease only spans the two writes. Another process holding
    # the key runs the same bytes at this moment and records its own rejection.
    claim = store.claim(key, key, config.owner, config.lease_ttl_s, config.dead_after_s)
    if claim.status in (ClaimStatus.ACQUIRED, ClaimStatus.ACQUIRED_AFTER_CRASH):
        store.complete(key, config.owner, False, event)
