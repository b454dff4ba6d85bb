"""A returned delivery waits for its predecessor (docs/ordering.md, "Returned deliveries out
of order").

The sequencer names, in ``x-provisioner-after``, the command routed before each one of the
same ordering key. A delivery the broker (or the intake) returned may reach its partition's
owner ahead of that predecessor; before it runs it asks whether the predecessor *has
passed* (a terminal record, the customer's holder, parked behind the customer's hold). If
not, it steps aside in the pool (``ordering.SetAside``), unacked, so the predecessor can run
first; the predecessor's end here, the periodic look at the store, or the bounded wait
(``PROVISIONER_PREDECESSOR_WAIT``: past it the predecessor was purged, rejected without a
record under its key, or cannot arrive) puts it back at the head of its customer's queue.

``check`` and ``finished`` run on pool threads, inside the customer's serial order; the
periodic look runs on a thread of its own, started by the first delivery set aside.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from worker.config.settings import PREDECESSOR_WAIT_S
from worker.ordering import SetAside
from worker.parking import Holds
from worker.routing import key_of
from worker.store import IdempotencyStore, RecordState
from worker.store.order import OrderStore

log = logging.getLogger(__name__)

# How often the store is asked about the predecessors still awaited (they may finish in
# another process, after a hand-over).
PREDECESSOR_CHECK_EVERY_S = 1.0
# Deliveries given back to their partition once (their predecessors behind them there),
# remembered so that none is given back twice: each return counts towards the delivery limit.
GIVEN_BACK_KEYS = 10_000
TERMINAL = (RecordState.SUCCEEDED, RecordState.FAILED)


@dataclass
class Waiter:
    token: Hashable  # the delivery's, in the pool (``SetAside``)
    order_key: str
    own: str  # its idempotency key
    after: str  # its predecessor's
    since: float  # when it first waited (before a give-back too): the bound counts from it
    partition: int | None = None
    aside_at: float = 0.0  # when this delivery stepped aside


class Passed:
    """Whether a predecessor has passed, in the store: its outcome recorded, or it holds
    its customer, or it is parked behind the customer's hold."""

    def __init__(self, records: IdempotencyStore, order_store: OrderStore, holds: Holds) -> None:
        self._records, self._order_store, self._holds = records, order_store, holds

    def __call__(self, order_key: str, after: str) -> bool:
        record = self._records.get(after)
        if record is not None and record.state in TERMINAL:
            return True
        hold = self._holds.get(order_key)
        if hold is None:
            return False
        if hold.holder == after:
            return True
        return any(key_of(body) == after for body in self._order_store.parked_bodies(order_key))


class Predecessors:
    """The deliveries of this process waiting for their predecessor; any thread."""

    def __init__(
        self,
        passed: Callable[[str, str], bool],
        resume: Callable[[list[Hashable]], int],
        wait_s: float = PREDECESSOR_WAIT_S,
        metrics: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._passed, self._resume, self._wait_s = passed, resume, wait_s
        self._metrics, self._clock = metrics, clock
        self._lock = threading.RLock()
        self._waiting: dict[str, list[Waiter]] = {}  # ordering key -> in the order set aside
        self._released: set[Hashable] = set()  # resumed: they run without a second check
        self._given_back: OrderedDict[str, float] = OrderedDict()  # own key -> first waited
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    def check(
        self,
        token: Hashable,
        order_key: str,
        own: str | None,
        after: str | None,
        returned: bool,
        partition: int | None = None,
    ) -> None:
        """Before the delivery's gate, in its customer's order: returns when it may run,
        raises ``SetAside`` when it must wait. Only a returned delivery reads the store."""
        if after is None or own is None or after == own:
            return
        if not returned and not self._waiting and not self._released:
            return  # the hot path: nothing waits in this process (no lock taken)
        with self._lock:
            if token in self._released:
                self._released.discard(token)
                return
            waiting = self._waiting.get(order_key)
            behind_aside = waiting is not None and any(w.own == after for w in waiting)
        if not behind_aside and (not returned or self._passed(order_key, after)):
            return
        now = self._clock()
        since = self._given_back.get(own, now)
        self._set_aside(Waiter(token, order_key, own, after, since, partition, now))

    def _set_aside(self, waiter: Waiter) -> None:
        with self._lock:
            self._waiting.setdefault(waiter.order_key, []).append(waiter)
        fields = {"idempotency_key": waiter.own, "predecessor": waiter.after}
        log.info("a returned command waits for its predecessor", extra={"fields": fields})
        self._count()
        self._start_looking()
        raise SetAside(waiter.token)

    def finished(self, order_key: str, own: str | None) -> None:
        """A command of ``order_key`` ended here (any outcome): those waiting for it run
        next, ahead of the customer's queue."""
        if own is None or order_key not in self._waiting:  # no lock: the common case
            return
        with self._lock:
            waiters = [w for w in self._waiting.get(order_key, []) if w.after == own]
        self._release(waiters)

    def _release(self, waiters: list[Waiter]) -> None:
        """Take ``waiters`` out (those still waiting), and resume them in that order."""
        tokens = []
        with self._lock:
            for waiter in waiters:
                queue = self._waiting.get(waiter.order_key, [])
                if waiter not in queue:
                    continue  # released by another thread, or forgotten with its channel
                queue.remove(waiter)
                if not queue:
                    del self._waiting[waiter.order_key]
                self._released.add(waiter.token)
                tokens.append(waiter.token)
        if tokens:
            self._resume(tokens)
            self._count()

    def look(self) -> None:
        """Each predecessor awaited (not itself waiting here: that one releases it when it
        runs) is looked up in the store; a delivery past the bound stops waiting, loudly."""
        with self._lock:
            due = [
                w for ws in self._waiting.values() for w in ws if w.after not in {x.own for x in ws}
            ]
        for waiter in due:
            passed = self._passed(waiter.order_key, waiter.after)
            over = not passed and self._clock() - waiter.since >= self._wait_s
            if over:
                self._gave_up(waiter)
            if passed or over:
                self._release([waiter])

    def _gave_up(self, waiter: Waiter) -> None:
        fields = {
            "idempotency_key": waiter.own,
            "predecessor": waiter.after,
            "order_key": waiter.order_key,
            "waited_s": round(self._clock() - waiter.since, 1),
        }
        log.warning("gave up waiting for a predecessor; the command runs", extra={"fields": fields})
        if self._metrics is not None:
            self._metrics.predecessor_wait_given_up()

    # -- giving back --------------------------------------------------------------------

    def waiting_in(self, partition: int) -> int:
        with self._lock:
            return sum(1 for ws in self._waiting.values() for w in ws if w.partition == partition)

    def partitions(self) -> set[int]:
        with self._lock:
            waiters = [w for ws in self._waiting.values() for w in ws]
        return {w.partition for w in waiters if w.partition is not None}

    def stalled(self, partition: int, after_s: float) -> bool:
        """The partition's newest waiting delivery stepped aside ``after_s`` ago or more."""
        with self._lock:
            times = [
                w.aside_at for ws in self._waiting.values() for w in ws if w.partition == partition
            ]
        return bool(times) and self._clock() - max(times) >= after_s

    def take(self, partition: int, again: bool) -> list[Waiter]:
        """The partition's waiting deliveries, out of the waits, to give back to it unacked
        (behind their predecessors there): all of them (``again``), or only those never
        given back before (a delivery given back once waits out the bound the next time)."""
        with self._lock:
            taken = [
                w
                for ws in self._waiting.values()
                for w in ws
                if w.partition == partition and (again or w.own not in self._given_back)
            ]
            for waiter in taken:
                queue = self._waiting[waiter.order_key]
                queue.remove(waiter)
                if not queue:
                    del self._waiting[waiter.order_key]
                self._given_back[waiter.own] = waiter.since
                self._given_back.move_to_end(waiter.own)
            while len(self._given_back) > GIVEN_BACK_KEYS:
                self._given_back.popitem(last=False)
        if taken:
            self._count()
        return taken

    def forget(self) -> None:
        """The channel is gone: its deliveries go back to their partitions unacked."""
        with self._lock:
            self._waiting.clear()
            self._released.clear()
        self._count()

    def waiting(self) -> int:
        with self._lock:
            return sum(len(ws) for ws in self._waiting.values())

    def _count(self) -> None:
        if self._metrics is not None:
            self._metrics.awaiting_predecessor(self.waiting())

    # -- the periodic look ------------------------------------------------------------

    def _start_looking(self) -> None:
        self._wake.set()
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._look_while_waiting, name="predecessors", daemon=True
            )
            self._thread.start()

    def _look_while_waiting(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait()
            if self._stopped.wait(PREDECESSOR_CHECK_EVERY_S):
                return
            try:
                self.look()
            except Exception:  # the store: looked at again on the next round
                log.warning("predecessors not looked up", exc_info=True)
            if not self.waiting():
                self._wake.clear()
                if self.waiting():  # set aside meanwhile
                    self._wake.set()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()
