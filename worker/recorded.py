"""The outcome a key already has in the idempotency store, published again instead of running
the command a second time: a success replayed, a recorded failure with its dead-letter copy.

Each copy keeps the stored event (same ``event_id``), so a consumer sees one outcome per
command however many times the worker died between recording it and the ack.
"""

from __future__ import annotations

from collections.abc import Callable

from contracts import Command
from worker import terminal
from worker.decision import Decision
from worker.rejection import Count
from worker.store import IdempotencyStore, RecordState

# The fingerprints under which a record counts as this command's (the legacy one included).
Fingerprints = Callable[[Command], set[str | None]]


def replay_success(command: Command, stored: bytes, count: Count) -> Decision:
    count("idempotent_replay", type(command).__name__)
    return terminal.succeeded(command, stored, replayed=True)


def replay_failure(command: Command, stored: bytes, count: Count) -> Decision | None:
    """A recorded CommandFailed again; None when ``stored`` is another event."""
    decision = terminal.stored_failure(command, stored)
    if decision is not None:
        count("idempotent_replay", type(command).__name__)
    return decision


def recorded_outcome(
    store: IdempotencyStore, command: Command, fingerprints: Fingerprints, count: Count
) -> Decision | None:
    """The stored outcome of a key, if any: a command parked at the delivery limit after
    it succeeded (its ack lost, say) re-publishes its event, not CommandFailed."""
    record = store.get(command.idempotency_key)
    if record is None or record.fingerprint not in fingerprints(command):
        return None
    if record.state is RecordState.SUCCEEDED and record.event is not None:
        return replay_success(command, record.event, count)
    return recorded_failure(store, command, fingerprints, count)


def recorded_failure(
    store: IdempotencyStore, command: Command, fingerprints: Fingerprints, count: Count
) -> Decision | None:
    """A redelivered command whose failure is already recorded: that decision again.

    The worker died after recording the failure and before the ack. Running the command
    again would publish a second terminal event (another event_id) and dead-letter it a
    second time; instead the stored event goes out again with its dead-letter copy. The
    copy may then be in the dead-letter queue twice, which a replay absorbs (the second
    replay finds the key succeeded), whereas skipping it could lose the only copy.
    """
    record = store.get(command.idempotency_key)
    if record is None or record.state is not RecordState.FAILED or record.event is None:
        return None
    if record.fingerprint not in fingerprints(command):
        return None  # the claim reports the conflict
    return replay_failure(command, record.event, count)


def recorded_by_another(store: IdempotencyStore, command: Command, count: Count) -> Decision | None:
    """After ``complete`` found another worker holding the key: the outcome whoever completed
    recorded, published again; None when nobody has yet (the message comes back later)."""
    record = store.get(command.idempotency_key)
    stored = record.event if record is not None else None
    if record is None or stored is None:
        return None
    if record.state is RecordState.SUCCEEDED:
        return replay_success(command, stored, count)
    return replay_failure(command, stored, count)
