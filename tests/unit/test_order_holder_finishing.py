"""A holder's hold is cleared only once its outcome is confirmed (docs/ordering.md, point 8),
on the real store (SQLite and PostgreSQL).

Found by the full soak (three processes, three kills, two broker restarts): the hold was
cleared when the holder's outcome was decided; its process died before the outcome was
confirmed, so the next owner ran the customer's parked commands at once and the holder's
returned delivery replayed its event after theirs (effects in order, events not)."""

from __future__ import annotations

import json
from typing import Any

import pika

from tests.fixtures.stores import FakeClock
from tests.unit.test_order_parked_redelivery import KEY, PARTITION, Owner
from worker.broker import headers as h
from worker.delivery import Delivery
from worker.store import IdempotencyStore

HOLDER = "alice-p1"


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
    owner = Owner.holding(store, clock, HOLDER)
    # When it runs to a terminal outcome (not yet confirmed by the broker)
    assert owner.arrive(delivery_of(HOLDER, redelivered=False)).outcome == "failed"
    # Then the store still names it the holder, and this process knows it is finishing
    assert owner.upkeep.holds_of(PARTITION) == {KEY: HOLDER}
    assert owner.holds.get(KEY) is not None and owner.holds.get(KEY).finishing == HOLDER  # type: ignore[union-attr]
    # And should the process die now, the next owner runs the holder's redelivery first
    # (a replay) and parks the customer's later command behind it
    successor = owner.next_owner()
    assert successor.holds.load(PARTITION) == []  # no backlog to run yet
    assert successor.arrive(delivery_of("alice-p2", redelivered=False)).outcome == "parked"
    assert successor.arrive(delivery_of(HOLDER, redelivered=True)).outcome == "failed"
    # And once the outcome is confirmed the hold is cleared, in the store too
    assert successor.holds.clear_finished(KEY, HOLDER)
    assert owner.upkeep.holds_of(PARTITION) == {KEY: None}
    assert successor.holds.get(KEY) is not None and successor.holds.get(KEY).holder is None  # type: ignore[union-attr]


def test_a_parked_command_that_became_the_holder_and_never_left_is_run_again(
    store: IdempotencyStore, clock: FakeClock
) -> None:
    # Given a customer held, its next command parked behind the hold
    owner = Owner.holding(store, clock, "alice-p0")
    owner.arrive(delivery_of(HOLDER, redelivered=False))
    # When the backlog runs it and it is decided for a delay tier (it holds the customer
    # now), and the process dies before that copy is confirmed and the row deleted
    owner.holds.set(KEY, PARTITION, None)
    owner.executor.outcome = "retry"
    assert owner.gate.run_parked(KEY, PARTITION, None) is not None
    assert owner.upkeep.holds_of(PARTITION) == {KEY: HOLDER}
    # Then the partition's next owner does not wait for a holder that never comes back:
    # it runs the backlog again from that command
    successor = owner.next_owner()
    assert successor.holds.load(PARTITION) == [KEY]
    assert owner.upkeep.holds_of(PARTITION) == {KEY: None}
    owner.executor.outcome = "failed"
    again = successor.gate.run_parked(KEY, PARTITION, None)
    assert again is not None and again.envelope.command is not None
    assert again.envelope.command.idempotency_key == HOLDER
    assert owner.executor.delivery_counts == [0, 1]  # the second time as a redelivery


def test_a_holder_out_in_its_delay_tier_keeps_its_hold_on_load(
    store: IdempotencyStore, clock: FakeClock
) -> None:
    # Given a customer held by a command in a delay tier, another command parked behind it
    owner = Owner.holding(store, clock, HOLDER)
    owner.arrive(delivery_of("alice-p2", redelivered=False))
    # When the partition's next owner loads the holds
    successor = owner.next_owner()
    # Then the customer stays held: nothing to run until the holder comes back
    assert successor.holds.load(PARTITION) == []
    assert owner.upkeep.holds_of(PARTITION) == {KEY: HOLDER}
