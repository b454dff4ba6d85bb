"""A rejection recorded in the idempotency store under a key of its own, and replayed from
there: an invalid command's (under the delivery's ``rejection_key``, ``worker.delivery``) and
an idempotency conflict's (under ``conflict_key``).

The channel may die after the CommandRejected went out and before the ack: the redelivery
must publish that event again (same ``event_id``, as a replayed success or failure does),
not a second rejection. A fresh publish is rejected anew, as a failed key runs again.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable

from contracts import Command
from worker import terminal
from worker.decision import Decision, Envelope, ExecutorConfig
from worker.delivery import REJECTION_KEY_PREFIX
from worker.outcomes import Verdict
from worker.store import ClaimStatus, IdempotencyStore

Count = Callable[[str, str], None]  # ("idempotent_replay", command type) on a replay


def reject_invalid(
    store: IdempotencyStore, config: ExecutorConfig, envelope: Envelope, count: Count
) -> Decision:
    """The decision for ``envelope.invalid``."""
    invalid = envelope.invalid
    assert invalid is not None
    decide = lambda: terminal.rejected_invalid(envelope, invalid)  # noqa: E731
    return recorded_rejection(store, config, envelope, envelope.rejection_key, decide, count)


def reject_conflict(
    store: IdempotencyStore,
    config: ExecutorConfig,
    envelope: Envelope,
    command: Command,
    verdict: Verdict,
    fingerprint: str,
    count: Count,
) -> Decision:
    """The decision for ``command`` whose key another payload (fingerprint) already used."""
    message = "idempotency_key was already used for a different command payload"
    decide = functools.partial(terminal.rejected, envelope, command, verdict, message)
    key = conflict_key(command, fingerprint, envelope.correlation_id)
    return recorded_rejection(store, config, envelope, key, decide, count)


def conflict_key(command: Command, fingerprint: str, correlation_id: str | None) -> str:
    """Where the rejection of ``command`` (its key used by another payload) is recorded."""
    parts = (command.idempotency_key, fingerprint, correlation_id or "")
    digest = hashlib.sha256("\0".join(parts).encode("utf-8", "replace")).hexdigest()
    return f"{REJECTION_KEY_PREFIX}conflict:{digest}"


def recorded_rejection(
    store: IdempotencyStore,
    config: ExecutorConfig,
    envelope: Envelope,
    key: str | None,
    decide: Callable[[], Decision],
    count: Count,
) -> Decision:
    """The rejection recorded under ``key`` for a redelivery or a delay-tier copy, else the
    one ``decide`` makes, recorded there."""
    if key is not None and (envelope.delivery_count or envelope.delayed_attempts):
        record = store.get(key)
        stored = record.event if record is not None else None
        decided = terminal.stored_rejection(stored) if stored is not None else None
        if decided is not None:
            count("idempotent_replay", decided.command_type)
            return decided
    decision = decide()
    if key is not None and decision.event is not None:
        _record(store, config, key, decision.event)
    return decision


def _record(store: IdempotencyStore, config: ExecutorConfig, key: str, event: bytes) -> None:
    # Decided without a call: the lease only spans the two writes. Another process holding
    # the key runs the same message at this moment and records its own rejection.
    claim = store.claim(key, key, config.owner, config.lease_ttl_s, config.dead_after_s)
    if claim.status in (ClaimStatus.ACQUIRED, ClaimStatus.ACQUIRED_AFTER_CRASH):
        store.complete(key, config.owner, False, event)
