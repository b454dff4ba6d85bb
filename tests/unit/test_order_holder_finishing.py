"""A holder's hold is cleared only once its outcome is confirmed (docs/ordering.md, point 8),
on the real store (SQLite and PostgreSQL).

Found by the full soak (three processes, three kills, two broker restarts): the hold was
cleared when the holder's outcome was decided; its process died before the outcome was
confirmed, so the next owner ran the customer's parked commands at once and the holder's
returned delivery replayed its event after theirs (effects in order, events not)."""

from __future__ import annotations

import json
from typing import Any, cast

import pika

from tests.fixtures.stores import FakeClock
from tests.unit.test_order_parked_redelivery import RecordingExecutor, envelope_reader
from worker.broker import headers as h
from worker.delivery import Delivery
from worker.parking import Holds, OrderGate
from worker.store import IdempotencyStore
from worker.store.order import Backend
from worker.store.order_upkeep import OrderUpkeep

KEY, HOLDER, PARTITION = "alice", "alice-p1", 2


def delivery_of(idempotency_key: str, *, redelivered: bool) -> Delivery:
    body = json.dumps(
        {
            "type": "GetAppSettings",
            "idempotency_key": idempotency_key,
            "customer": KEY,
            "app": "clicktrack",
        }
    ).encode()
    headers: dict[str, Any] = {h.ATTEMPTS: 3}
    if redelivered:
        headers[h.DELIVERY_COUNT] = 1
    properties = pika.BasicProperties(headers=headers, message_id=idempotency_key)
    return Delivery(None, 1, "2", properties, body, 0.0, redelivered=redelivered)


def test_a_decided_holder_stays_the_holder_until_its_outcome_is_confirmed(
    store: IdempotencyStore, clock: FakeClock
) -> None:
    # Given a customer held by a command that came back from its delay tier
    upkeep = OrderUpkeep(cast(Backend, store), clock=clock)
    holds = Holds(upkeep)
    holds.set(KEY, PARTITION, HOLDER)
    reader, executor = envelope_reader(), RecordingExecutor()
    gate = OrderGate(cast(Any, executor), upkeep, holds, reader._envelope_of)
    back = delivery_of(HOLDER, redelivered=False)
    # When it runs to a terminal outcome (not yet confirmed by the broker)
    decision = gate.process(
        reader._envelope(back), KEY, PARTITION, "GetAppSettings", back.properties, back.body
    )
    assert decision.outcome == "failed"
    # Then the store still names it the holder, and this process knows it is finishing
    assert upkeep.holds_of(PARTITION) == {KEY: HOLDER}
    assert holds.get(KEY) is not None and holds.get(KEY).finishing == HOLDER  # type: ignore[union-attr]
    # And should the process die now, the next owner runs the holder's redelivery first
    # (a replay) and parks the customer's later command behind it
    next_holds = Holds(upkeep)
    assert next_holds.load(PARTITION) == []  # no backlog to run yet
    next_gate = OrderGate(cast(Any, executor), upkeep, next_holds, reader._envelope_of)
    later = delivery_of("alice-p2", redelivered=False)
    parked = next_gate.process(
        reader._envelope(later), KEY, PARTITION, "GetAppSettings", later.properties, later.body
    )
    assert parked.outcome == "parked"
    again = delivery_of(HOLDER, redelivered=True)
    replayed = next_gate.process(
        reader._envelope(again), KEY, PARTITION, "GetAppSettings", again.properties, again.body
    )
    assert replayed.outcome == "failed"
    # And once the outcome is confirmed the hold is cleared, in the store too
    assert next_holds.clear_finished(KEY, HOLDER)
    assert upkeep.holds_of(PARTITION) == {KEY: None}
    assert next_holds.get(KEY) is not None and next_holds.get(KEY).holder is None  # type: ignore[union-attr]


def test_a_parked_command_that_became_the_holder_and_never_left_is_run_again(
    store: IdempotencyStore, clock: FakeClock
) -> None:
    # Given a customer held, its next command parked behind the hold
    upkeep = OrderUpkeep(cast(Backend, store), clock=clock)
    holds = Holds(upkeep)
    holds.set(KEY, PARTITION, "alice-p0")
    reader, executor = envelope_reader(), RecordingExecutor()
    gate = OrderGate(cast(Any, executor), upkeep, holds, reader._envelope_of)
    parked = delivery_of(HOLDER, redelivered=False)
    gate.process(
        reader._envelope(parked), KEY, PARTITION, "GetAppSettings", parked.properties, parked.body
    )
    # When the backlog runs it and it is decided for a delay tier (it holds the customer
    # now), and the process dies before that copy is confirmed and the row deleted
    holds.set(KEY, PARTITION, None)
    executor.outcome = "retry"
    assert gate.run_parked(KEY, PARTITION, None) is not None
    assert upkeep.holds_of(PARTITION) == {KEY: HOLDER}
    # Then the partition's next owner does not wait for a holder that never comes back:
    # it runs the backlog again from that command
    next_holds = Holds(upkeep)
    assert next_holds.load(PARTITION) == [KEY]
    assert upkeep.holds_of(PARTITION) == {KEY: None}
    executor.outcome = "failed"
    next_gate = OrderGate(cast(Any, executor), upkeep, next_holds, reader._envelope_of)
    again = next_gate.run_parked(KEY, PARTITION, None)
    assert again is not None and again.envelope.command is not None
    assert again.envelope.command.idempotency_key == HOLDER
    assert executor.delivery_counts == [0, 1]  # the second time as a redelivery


def test_a_holder_out_in_its_delay_tier_keeps_its_hold_on_load(
    store: IdempotencyStore, clock: FakeClock
) -> None:
    # Given a customer held by a command in a delay tier, another command parked behind it
    upkeep = OrderUpkeep(cast(Backend, store), clock=clock)
    holds = Holds(upkeep)
    holds.set(KEY, PARTITION, HOLDER)
    reader, executor = envelope_reader(), RecordingExecutor()
    gate = OrderGate(cast(Any, executor), upkeep, holds, reader._envelope_of)
    later = delivery_of("alice-p2", redelivered=False)
    gate.process(
        reader._envelope(later), KEY, PARTITION, "GetAppSettings", later.properties, later.body
    )
    # When the partition's next owner loads the holds
    next_holds = Holds(upkeep)
    # Then the customer stays held: nothing to run until the holder comes back
    assert next_holds.load(PARTITION) == []
    assert upkeep.holds_of(PARTITION) == {KEY: HOLDER}
