"""Aliases of renames are purged once no command was routed through them for the retention
(docs/ordering.md, "Aliases"), on the store's injected clock; in use, one is kept."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import cast

from tests.fixtures.stores import FakeClock
from worker.sequencer import ALIAS_TOUCH_EVERY_S, Router
from worker.store import IdempotencyStore, open_store
from worker.store.order import ADD_ALIAS, Backend
from worker.store.order_upkeep import ALIAS_MIN_RETENTION_S, OrderUpkeep, alias_retention_s

DAY_S = 86400.0


def rename(old: str, new: str) -> bytes:
    body = {"type": "ChangeUsername", "idempotency_key": f"rn-{new}", "customer": old}
    return json.dumps({**body, "new_username": new}).encode()


def disable(name: str) -> bytes:
    body = {"type": "DisableCustomer", "idempotency_key": f"dis-{name}", "customer": name}
    return json.dumps(body).encode()


class Monotonic:
    """The sequencer's own clock, moved with the store's."""

    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock

    def __call__(self) -> float:
        return self._clock.now


def test_an_alias_in_use_is_kept_and_one_unused_past_the_retention_is_purged(
    store: IdempotencyStore, clock: FakeClock
) -> None:
    # Given two renames recorded by the sequencer
    upkeep = OrderUpkeep(cast(Backend, store), clock=clock)
    router = Router(upkeep, 4, clock=Monotonic(clock))
    router.load()
    router.route(rename("a-old", "a-new"), "m1")
    router.route(rename("b-old", "b-new"), "m2")
    retention_s = alias_retention_s(1.0)  # a one-day store retention: the floor applies
    assert retention_s == ALIAS_MIN_RETENTION_S
    # When commands keep being routed through the first one, and never through the second
    for _ in range(int(retention_s // ALIAS_TOUCH_EVERY_S) + 24):
        clock.advance(ALIAS_TOUCH_EVERY_S)
        assert router.route(disable("a-new"), "m")[0] == "a-old"
    # Then the purge deletes the unused one only
    assert upkeep.purge(retention_s) == 1
    assert upkeep.aliases() == {"a-new": "a-old"}
    # And a sequencer loading the aliases afresh routes the purged name as itself
    fresh = Router(upkeep, 4)
    fresh.load()
    assert fresh.route(disable("b-new"), "m")[0] == "b-new"
    assert fresh.route(disable("a-new"), "m")[0] == "a-old"
    # And the running sequencer, still routing by it from memory, writes it back on its use
    assert router.route(disable("b-new"), "m")[0] == "b-old"
    assert upkeep.aliases() == {"a-new": "a-old", "b-new": "b-old"}


def test_the_alias_purge_is_bounded_per_run(store: IdempotencyStore, clock: FakeClock) -> None:
    # Given 1500 aliases unused for longer than the retention
    upkeep = OrderUpkeep(cast(Backend, store), clock=clock)
    rows = [{"name": f"new-{i}", "key": f"old-{i}", "now": clock.now} for i in range(1500)]
    upkeep._run(lambda execute: [execute(ADD_ALIAS, row) for row in rows])  # one transaction
    clock.advance(ALIAS_MIN_RETENTION_S + DAY_S)
    # When one run may delete at most 1000 rows
    first = upkeep.purge(ALIAS_MIN_RETENTION_S, max_rows=1000)
    # Then it stops there, and the next run takes the rest
    assert first == 1000
    assert len(upkeep.aliases()) == 500
    assert upkeep.purge(ALIAS_MIN_RETENTION_S, max_rows=1000) == 500
    assert upkeep.aliases() == {}


def test_a_store_from_before_the_used_column_gets_it_and_purges_by_creation(
    tmp_path: Path,
) -> None:
    # Given a store file whose alias table predates the ``used_at`` column
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE order_aliases (name TEXT PRIMARY KEY, order_key TEXT NOT NULL, "
            "created_at REAL NOT NULL)"
        )
        conn.execute("INSERT INTO order_aliases VALUES ('new', 'old', 1000.0)")
    clock = FakeClock()
    # When the worker opens it
    store = open_store(f"sqlite:///{path}", clock=clock)
    try:
        upkeep = OrderUpkeep(cast(Backend, store), clock=clock)
        # Then the old alias is still read, and purged by its creation time
        assert upkeep.aliases() == {"new": "old"}
        assert upkeep.purge(ALIAS_MIN_RETENTION_S) == 1
    finally:
        store.close()
