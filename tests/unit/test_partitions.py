"""Partition assignment and the lease rounds of ``Ownership``, on a real SQLite store."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from worker.assignment import assigned
from worker.partitions import (
    FENCE_FRACTION,
    START_FRESH_SHARE,
    STARTUP_GRACE_S,
    Ownership,
)
from worker.store import open_store
from worker.store.order import Backend, OrderStore

PARTITIONS = 16
TTL_S = 20.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("count", [1, 2, 3, 5, 16, 20])
def test_every_partition_has_one_owner_and_shares_are_even(count: int) -> None:
    # Given live members / When each computes its own partitions
    members = [f"w{i}" for i in range(count)]
    shares = [assigned(PARTITIONS, members, m) for m in members]
    # Then together they cover every partition exactly once, each share within one of another
    assert sorted(p for share in shares for p in share) == list(range(PARTITIONS))
    sizes = [len(share) for share in shares]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("count", [2, 3, 4, 5, 6])
def test_the_sequencers_process_never_takes_more_and_a_stranger_none(count: int) -> None:
    # Given members, the first of them holding the sequencer lease
    members = [f"w{i}" for i in range(count)]
    # When they compute their shares in any order of listing
    shares = [len(assigned(PARTITIONS, members[::-1], m, "w0")) for m in members]
    # Then the sequencer's process has no more than any other; a process not listed has none
    assert shares[0] == min(shares)
    assert assigned(PARTITIONS, members, "stranger") == frozenset()


def test_two_processes_split_the_partitions_evenly_the_sequencer_counted() -> None:
    # Given two members, one of them the sequencer / When they compute their shares
    shares = [len(assigned(PARTITIONS, ["a", "b"], m, "a")) for m in ("a", "b")]
    # Then 8/8: moving the commands costs the sequencer's process less than a partition
    assert shares == [8, 8]


def ownership(store: OrderStore, owner: str, clock: Clock) -> Ownership:
    return Ownership(store, owner, PARTITIONS, heartbeat_s=1.0, ttl_s=TTL_S, clock=clock)


def test_a_joining_member_gets_its_share_only_after_the_owner_drained_it(tmp_path: Path) -> None:
    # Given one member owning every partition
    backend = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    store_clock = Clock()
    store = OrderStore(cast(Backend, backend), clock=store_clock)
    clock = Clock()
    first, second = ownership(store, "a", clock), ownership(store, "b", clock)
    first.tick()
    assert first.wanted() == frozenset()  # nothing in its first second: peers may be starting
    clock.now += STARTUP_GRACE_S
    first.tick()
    assert first.wanted() == frozenset(range(PARTITIONS)) and first.is_sequencer()
    # When a second member joins
    second.tick()
    second.tick()
    # Then it gets nothing while the first still holds its share
    assert second.wanted() == frozenset()
    first.tick()
    given_up = first.to_give_up()
    assert len(given_up) == 8 and first.wanted() == frozenset(range(PARTITIONS)) - given_up
    # And once the first reports them drained and releases them, the second takes them
    for partition in given_up:
        first.drained(partition)
    first.tick()
    second.tick()
    assert second.wanted() == given_up
    assert first.to_give_up() == frozenset()
    backend.close()


def sole_member(tmp_path: Path) -> tuple[Any, OrderStore, Clock, Ownership]:
    """(backend, store, clock, member): one member past its start-up, owning everything."""
    backend = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    clock = Clock()
    store = OrderStore(cast(Backend, backend), clock=clock)
    member = ownership(store, "a", clock)
    clock.now += STARTUP_GRACE_S
    member.tick()
    member.tick()
    return backend, store, clock, member


def test_a_holder_cut_off_from_the_store_lets_go_before_its_lease_ends(tmp_path: Path) -> None:
    # Given a member owning everything
    backend, store, clock, member = sole_member(tmp_path)
    assert member.is_sequencer() and len(member.wanted()) == PARTITIONS
    # When half the lease time passes without a successful round
    clock.now += TTL_S / 2
    # Then it consumes nothing and is no sequencer, though the store still names it
    assert member.wanted() == frozenset() and not member.is_sequencer()
    assert store.leases()["sequencer"] == "a"
    # And once its lease and its membership ran out, another member takes everything
    clock.now += TTL_S / 2 + 1
    other = ownership(store, "b", clock)
    clock.now += STARTUP_GRACE_S
    other.tick()
    other.tick()
    assert other.is_sequencer() and len(other.wanted()) == PARTITIONS
    backend.close()


def test_a_fenced_holder_tells_readiness_which_leases_and_why(tmp_path: Path) -> None:
    # Given a member holding the sequencer lease and every partition
    backend, _store, clock, member = sole_member(tmp_path)
    assert member.problem() is None
    # When half the lease time passes without a successful round
    clock.now += TTL_S / 2
    # Then readiness hears that it fenced itself, and from which leases
    assert member.problem() == (
        f"fenced: {PARTITIONS} partition lease(s) and the sequencer lease not renewed for 10s"
        " (no answer from the store yet); not consumed until renewed"
    )
    # And once a round succeeds again, nothing
    member.tick()
    assert member.problem() is None
    backend.close()


def test_partitions_fenced_or_never_held_are_reported_lost(tmp_path: Path) -> None:
    # Given a member owning every partition
    backend = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    clock = Clock()
    store = OrderStore(cast(Backend, backend), clock=clock)
    member = ownership(store, "a", clock)
    clock.now += STARTUP_GRACE_S
    member.tick()
    member.tick()
    # Then while its rounds succeed none of its partitions is lost, one it never held is
    assert member.lost([0, 5, PARTITIONS]) == frozenset({PARTITIONS})
    # When half the lease time passes without a successful round (the store is down)
    clock.now += TTL_S / 2
    # Then every partition it still has deliveries of is lost: the consumer gives them back
    assert member.lost([0, 5]) == frozenset({0, 5})
    # And a successful round makes them its own again
    member.tick()
    assert member.lost([0, 5]) == frozenset()
    backend.close()


def test_the_sequencer_lease_starts_the_intake_only_with_half_its_window_left(
    tmp_path: Path,
) -> None:
    # Given a member holding the sequencer lease, its last round longer ago than half the
    # fencing window (a round that waited for the store)
    backend, _store, clock, member = sole_member(tmp_path)
    clock.now += TTL_S * FENCE_FRACTION * START_FRESH_SHARE + 0.1
    # Then it still holds the lease (a consuming sequencer goes on), but must not start one
    assert member.is_sequencer()
    assert not member.is_sequencer(START_FRESH_SHARE)
    # And after a round it may start again
    member.tick()
    assert member.is_sequencer(START_FRESH_SHARE)
    backend.close()
