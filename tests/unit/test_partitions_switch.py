"""Changing P (docs/ordering.md, "Changing P"): the store records the deployment's P, a
process configured otherwise works with it until every member agrees, and the switch's
last step hands every partition back before the holds move; on the real store (SQLite and
PostgreSQL) with an injected clock."""

from __future__ import annotations

from typing import Any, cast

from tests.fixtures.stores import FakeClock
from worker.partitions import STARTUP_GRACE_S, Ownership
from worker.routing import partition_of
from worker.store import IdempotencyStore
from worker.store.order import Backend
from worker.store.order_upkeep import OrderUpkeep

TTL_S = 20.0


class Gauges:
    """The order metrics ``Ownership`` reports, the partitioning ones kept."""

    def __init__(self) -> None:
        self.partitions, self.switching = 0, False

    def partitions_owned(self, count: int, sequencer: bool) -> None: ...

    def partitions_handed_over(self, count: int) -> None: ...

    def partitioning(self, partitions: int, switching: bool) -> None:
        self.partitions, self.switching = partitions, switching


def member(
    store: OrderUpkeep, owner: str, partitions: int, clock: FakeClock, metrics: Any = None
) -> Ownership:
    return Ownership(
        store, owner, partitions, heartbeat_s=1.0, ttl_s=TTL_S, clock=clock, metrics=metrics
    )


def test_a_member_configured_otherwise_works_with_the_recorded_p_until_all_agree(
    store: IdempotencyStore, clock: FakeClock
) -> None:
    # Given a deployment of 4 partitions, and a member configured with 6 joining it
    upkeep = OrderUpkeep(cast(Backend, store), clock=clock)
    old, new = member(upkeep, "a", 4, clock), member(upkeep, "b", 6, clock)
    old.tick()
    new.tick()
    clock.advance(STARTUP_GRACE_S)
    for _ in range(3):
        old.tick()
        new.tick()
        for partition in old.to_give_up():  # the hand-over to the new member
            old.drained(partition)
    # Then the new one works with the deployment's 4, and no switch is due
    assert upkeep.partitioning()[:2] == (4, None)
    plan = new.partitioning()
    assert (plan.partitions, plan.configured, plan.to_change) == (4, 6, False)
    assert old.wanted() | new.wanted() == frozenset(range(4))
    # When the old member leaves (a rolling update done)
    old.leave()
    new.tick()
    # Then every member wants 6: the switch is due
    assert new.partitioning().to_change


def test_the_last_step_waits_for_every_lease_then_moves_the_holds(
    store: IdempotencyStore, clock: FakeClock
) -> None:
    # Given a member configured with 6 owning the 4 partitions of the deployment, and a
    # customer held in partition 3 (crc32 mod 4) behind a command in a delay tier
    upkeep = OrderUpkeep(cast(Backend, store), clock=clock)
    first = member(upkeep, "a", 4, clock)
    first.tick()
    first.leave()
    gauges = Gauges()
    owner = member(upkeep, "b", 6, clock, gauges)
    clock.advance(STARTUP_GRACE_S)
    owner.tick()
    owner.tick()
    assert owner.wanted() == frozenset(range(4))
    key = "repart-held"
    upkeep.set_hold(key, partition_of(key, 4), "repart-held-cred")
    upkeep.park(key, partition_of(key, 4), "rk", b"", b"{}")
    # When the switch reaches its last step
    upkeep.set_switch("release:6")
    owner.tick()
    # Then the owner gives every partition up, and the switch cannot end while it holds one
    assert owner.wanted() == frozenset() and owner.to_give_up() == frozenset(range(4))
    assert (gauges.partitions, gauges.switching) == (4, True)
    assert not upkeep.finish_switch(6, lambda k: partition_of(k, 6))
    for partition in range(4):
        owner.drained(partition)
    owner.tick()
    # And once they are released, the holds move to their partition under 6 and 6 is recorded
    assert upkeep.finish_switch(6, lambda k: partition_of(k, 6))
    assert upkeep.partitioning()[:2] == (6, None)
    assert upkeep.holds_of(partition_of(key, 6)) == {key: "repart-held-cred"}
    assert partition_of(key, 6) != partition_of(key, 4)
    # And a second finish changes nothing; the owner takes the 6 partitions
    assert not upkeep.finish_switch(6, lambda k: partition_of(k, 6))
    owner.tick()
    owner.tick()
    assert owner.wanted() == frozenset(range(6))
    assert (gauges.partitions, gauges.switching) == (6, False)
