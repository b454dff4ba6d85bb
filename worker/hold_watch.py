"""Stuck holds: found, reported, and released (docs/ordering.md, "Stuck holds").

A hold waits for its holder to come back from a delay tier. A holder that never comes back
(its delay-tier copy purged or dead-lettered by hand) would hold its customer forever. The
owner of each partition therefore looks at the holds of the partitions it consumes every
``check_every_s``, on a pool thread:

- a hold older than the longest delay tier plus ``PROVISIONER_HOLD_OVERDUE_MARGIN`` is
  *overdue*: counted in ``provisioner_order_holds_overdue`` and logged once as a warning
  (``hold overdue``), with what ``provisioner order release`` needs;
- an overdue hold whose holder already reached a terminal outcome in the idempotency store
  (it ran elsewhere, the hold stayed) is released at once: its parked commands run;
- a hold an operator released (``provisioner order release``: holder cleared in the store)
  is released here too, in memory, and its parked commands run.

Each release is decided in ``settle``, which runs in the per-key serial executor behind
whatever of that customer is running, and reads the hold again there: a holder that just
came back and went to a delay tier again keeps the customer held.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any

from worker.parking import Holds
from worker.store.order_upkeep import HoldRow, OrderUpkeep
from worker.store.records import RecordState, StoredRecord

log = logging.getLogger(__name__)

# How often a partition owner looks at its holds, at most; a shorter overdue margin looks
# twice per margin, so a hold is reported at most half a margin late.
HOLD_CHECK_EVERY_S = 30.0
TERMINAL = (RecordState.SUCCEEDED, RecordState.FAILED)
WATCH_KEY = ("hold-watch",)  # the pool key of the look at the holds: one at a time
OPERATOR = "operator"
FINISHED_HOLDER = "finished_holder"


def overdue_after_s(retry_delays_s: Iterable[float], margin_s: float) -> float:
    """A holder comes back after its tier's delay at most: the longest, plus the margin."""
    return max(retry_delays_s, default=0.0) + margin_s


def check_every_s(margin_s: float) -> float:
    return min(HOLD_CHECK_EVERY_S, margin_s / 2)


class HoldWatch:
    """One partition owner's look at its holds; ``check`` and ``settle`` on pool threads."""

    def __init__(
        self,
        upkeep: OrderUpkeep,
        holds: Holds,
        record_of: Callable[[str], StoredRecord | None],
        overdue_after: float,
        metrics: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._upkeep, self._holds, self._record_of = upkeep, holds, record_of
        self._overdue_after, self._metrics, self._clock = overdue_after, metrics, clock
        self._reported: set[tuple[str, str]] = set()  # (order key, holder) logged as overdue

    def run_on(
        self,
        pool: Any,
        partitions: frozenset[int],
        released: Callable[[str], None],
        done: Callable[[], None],
    ) -> None:
        """On ``pool`` (the consumer's keyed executor): ``check``, then ``settle`` each key
        behind its customer's work; ``released(key)`` for each hold released, ``done()``
        once the check is over."""

        def on_checked(future: Future[Any]) -> None:
            done()
            if future.exception() is not None:
                log.warning("could not look at the holds", exc_info=future.exception())
                return
            for key in future.result():
                task = functools.partial(self.settle, key)
                pool.submit(key, task, functools.partial(on_settled, key))

        def on_settled(key: str, future: Future[Any]) -> None:
            if future.exception() is not None:
                log.warning("could not release a hold", exc_info=future.exception())
            elif future.result():
                released(key)

        pool.submit(WATCH_KEY, functools.partial(self.check, partitions), on_checked)

    def check(self, partitions: Iterable[int]) -> list[str]:
        """Report the overdue holds of ``partitions``; the ordering keys to ``settle``."""
        now = self._clock()
        to_settle, overdue = [], []
        for row in self._upkeep.holds(partitions):
            held = self._holds.get(row.order_key)
            if held is None or held.holder is None or held.finishing is not None:
                continue  # not this process's (yet), its backlog runs, or it soon will
            if row.holder is None:
                to_settle.append(row.order_key)  # released by an operator
            elif now - row.updated_at > self._overdue_after:
                if self._finished(row.holder):
                    to_settle.append(row.order_key)
                else:
                    overdue.append(row)
        self._report(overdue, now)
        return to_settle

    def _finished(self, holder: str) -> bool:
        record = self._record_of(holder)
        return record is not None and record.state in TERMINAL

    def _report(self, overdue: list[HoldRow], now: float) -> None:
        if self._metrics is not None:
            self._metrics.holds_overdue(len(overdue))
        current = {(row.order_key, str(row.holder)) for row in overdue}
        for row in overdue:
            if (row.order_key, str(row.holder)) in self._reported:
                continue
            fields = {
                "order_key": row.order_key,
                "holder": row.holder,
                "partition": row.partition,
                "age_s": round(now - row.updated_at, 1),
                "parked": row.parked,
                "action": f"provisioner order release {row.order_key}",
            }
            log.warning("hold overdue: its holder has not come back", extra={"fields": fields})
        self._reported = current

    def settle(self, order_key: str) -> bool:
        """Release ``order_key``'s hold if an operator released it or its holder finished;
        True when its parked commands may now run. Runs behind the key's other work."""
        held = self._holds.get(order_key)
        if held is None or held.holder is None:
            return False
        stored = self._upkeep.hold(order_key)
        if stored is None:
            return False
        holder, _partition = stored
        if holder is None:
            self._holds.adopt_release(order_key)
            self._released(order_key, held.holder, OPERATOR)
            return True
        if holder == held.holder and self._finished(holder):
            self._holds.set(order_key, held.partition, None)
            self._released(order_key, holder, FINISHED_HOLDER)
            return True
        return False

    def _released(self, order_key: str, holder: str, by: str) -> None:
        fields = {"order_key": order_key, "holder": holder, "by": by}
        log.warning("hold released; its parked commands run", extra={"fields": fields})
        if self._metrics is not None:
            self._metrics.hold_released(by)
