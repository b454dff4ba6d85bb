"""Who consumes which partition, and who is the sequencer: leases in the shared store.

Every worker process is a member (``order_members``, seen every heartbeat). All members
compute the same assignment from the live members (``worker.assignment``), each takes
the leases of its own partitions when free, expired or already its own, and renews them
every heartbeat. A partition it holds but is no longer assigned (a member joined) is
drained by the consumer (cancel, finish what was received) and only then released, so its
next owner starts behind every command the previous one took. The sequencer lease goes to
whichever member takes it first.

A lease lasts ``ttl_s`` (``PROVISIONER_WORKER_DEAD_AFTER``) in the store; its holder counts
it as held only for half of that after its last successful renewal (self-fencing): a
process cut off from the store stops consuming before anyone else may take over.
See docs/ordering.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from worker.assignment import Partitioning, assigned
from worker.observability.redact import redact_text
from worker.store import StoreError
from worker.store.order import SEQUENCER_LEASE, OrderStore, Tick, partition_lease

log = logging.getLogger(__name__)

FENCE_FRACTION = 0.5  # of the lease time, without a renewal, before a holder lets go
# A partition, or the intake (the sequencer), is taken up (consumed) only while at least this
# share of its fencing window is left: a lease round that took long (the store just back)
# must not start a consumption that fences again at once, closing the channel a second time
# with part of the returned deliveries received and part still queued (a quorum queue would
# then put the second return behind the rest: out of order).
START_FRESH_SHARE = 0.5
# Between two lease rounds at most (the heartbeat when shorter): how soon a joining process
# gets its share. A round is one store transaction per process.
OWNERSHIP_TICK_S = 0.5
# A process takes no partition in its first second: the processes of one supervisor (or
# replicas rolled out together) start within it and split the partitions at once, instead
# of the first taking all and handing most over while the others wait.
STARTUP_GRACE_S = 1.0
# While this process waits for partitions it is assigned (or gives some up): the hand-over
# is a few rounds of both processes, and every round of it leaves work on one of them.
UNSETTLED_TICK_S = 0.1


class Ownership(threading.Thread):
    """Keeps this process's leases; the consumer and the sequencer ask it what they own."""

    def __init__(
        self,
        store: OrderStore,
        owner: str,
        partitions: int,
        *,
        heartbeat_s: float,
        ttl_s: float,
        metrics: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name="partition-ownership", daemon=True)
        self._store, self._owner, self._partitions = store, owner, partitions
        # This process's PROVISIONER_PARTITIONS; ``_partitions`` is the deployment's, as the
        # store records it (each round), which may differ until every member has this one.
        self._configured = partitions
        self._plan = Partitioning(partitions, partitions)
        self._tick_s, self._ttl_s = min(heartbeat_s, OWNERSHIP_TICK_S), ttl_s
        self._metrics, self._clock = metrics, clock
        self._lock = threading.Lock()
        self._renewed: dict[str, float] = {}  # lease name -> when last renewed (our clock)
        self._members: tuple[str, ...] = ()
        self._sequencer: str | None = None  # the holder of the sequencer lease, last seen
        self._draining: set[int] = set()  # held, no longer ours: the consumer gives them up
        self._drained: set[int] = set()  # given up by the consumer: released next tick
        self._born = clock()  # (Thread has its own _started)
        self._round_error: str | None = None  # why the last lease round failed
        self.stopped = threading.Event()
        self._wake = threading.Event()  # a drained partition is released at once

    # -- what the consumer and the sequencer ask ----------------------------------------

    def _fresh(self, name: str, share: float = 1.0) -> bool:
        """Renewed within ``share`` of the fencing window."""
        renewed = self._renewed.get(name)
        window_s = self._ttl_s * FENCE_FRACTION * share
        return renewed is not None and self._clock() - renewed < window_s

    def is_sequencer(self, share: float = 1.0) -> bool:
        """Holding the sequencer lease, renewed within ``share`` of the fencing window (the
        sequencer starts consuming the intake only with ``START_FRESH_SHARE`` left)."""
        with self._lock:
            return self._fresh(SEQUENCER_LEASE, share)

    def wanted(self, share: float = 1.0) -> frozenset[int]:
        """Partitions to consume now: held (and fresh), assigned, not being given up; with
        ``START_FRESH_SHARE``, those fresh enough to start consuming."""
        with self._lock:
            mine = self._mine()
            return frozenset(
                p for p in mine - self._draining if self._fresh(partition_lease(p), share)
            )

    def lost(self, partitions: Iterable[int]) -> frozenset[int]:
        """Of ``partitions`` (consumed, or with deliveries undecided), those whose lease is not
        held and fresh: fenced by a store outage, or taken by another member."""
        with self._lock:
            return frozenset(p for p in partitions if not self._fresh(partition_lease(p)))

    def to_give_up(self) -> frozenset[int]:
        """Held partitions the consumer must drain and then report with ``drained``."""
        with self._lock:
            return frozenset(self._draining - self._drained)

    def drained(self, partition: int) -> None:
        with self._lock:
            if partition in self._draining:
                self._drained.add(partition)
        self._wake.set()

    def members(self) -> tuple[str, ...]:
        with self._lock:
            return self._members

    def partitioning(self) -> Partitioning:
        with self._lock:
            return self._plan

    def _mine(self) -> frozenset[int]:
        """Assigned to this process; nothing while a change of P hands every partition back."""
        if self._plan.releasing:
            return frozenset()
        return assigned(self._partitions, self._members, self._owner, self._sequencer)

    def problem(self) -> str | None:
        """For /readyz: leases this process holds in the store but could not renew in time,
        so it fenced itself and consumes none of them (the store does not answer)."""
        if self.ident is not None and not self.is_alive() and not self.stopped.is_set():
            return "the lease rounds' thread ended"
        with self._lock:
            now, fence_s = self._clock(), self._ttl_s * FENCE_FRACTION
            stale = {n: now - at for n, at in self._renewed.items() if now - at >= fence_s}
            error = self._round_error
        if not stale:
            return None
        partitions = len(stale) - (SEQUENCER_LEASE in stale)
        what = f"{partitions} partition lease(s)" + (
            " and the sequencer lease" if SEQUENCER_LEASE in stale else ""
        )
        since = max(stale.values())
        why = error or "no answer from the store yet"
        return f"fenced: {what} not renewed for {since:.0f}s ({why}); not consumed until renewed"

    # -- the heartbeat -----------------------------------------------------------------

    def run(self) -> None:
        while not self.stopped.is_set():
            first = not self._members
            try:
                self.tick()
                self._round_error = None
            except StoreError as exc:  # leases age; the holder lets go by itself (fencing)
                log.warning("could not renew partition leases", exc_info=True)
                self._round_error = redact_text(f"{type(exc).__name__}: {exc}")[:300]
            except Exception as exc:  # a bug must not end the rounds: the next one tries again
                log.exception("partition lease round failed")
                self._round_error = f"failed: {type(exc).__name__}"
            if not (first and self._members):  # the first tick only learned the members
                self._wake.wait(UNSETTLED_TICK_S if self._unsettled() else self._tick_s)
                self._wake.clear()

    def _unsettled(self) -> bool:
        with self._lock:
            mine = self._mine()
            held = {p for p in mine if partition_lease(p) in self._renewed}
            return bool(self._draining) or held != mine

    def tick(self) -> None:
        with self._lock:
            mine = self._mine()
            if self._clock() - self._born < STARTUP_GRACE_S:
                mine = frozenset()
            release = set(self._drained)
            keep = {p for p in self._draining if p not in release}
            take = [SEQUENCER_LEASE] + [
                partition_lease(p) for p in sorted((mine - self._draining) | keep)
            ]
        started = self._clock()
        result = self._store.tick(
            self._owner,
            take,
            [partition_lease(p) for p in sorted(release)],
            self._ttl_s,
            self._ttl_s,
            self._configured,
        )
        with self._lock:
            self._sequencer = result.sequencer
            self._follow(result)
            self._apply(result.held, result.members, release, started)

    def _follow(self, result: Tick) -> None:
        """The deployment's P and any change of it under way, as the store has them."""
        plan = Partitioning(
            result.partitions or self._configured, self._configured, result.switch, result.agreed
        )
        fields = {"partitions": plan.partitions, "configured": plan.configured}
        if plan != self._plan and plan.switch is not None:
            log.warning(
                "changing the partitions", extra={"fields": {**fields, "step": plan.switch}}
            )
        elif plan != self._plan and plan.partitions != plan.configured:
            log.warning(
                "PROVISIONER_PARTITIONS differs from the deployment's: working with the "
                "deployment's until every process is configured alike",
                extra={"fields": fields},
            )
        self._plan, self._partitions = plan, plan.partitions
        if self._metrics is not None:
            self._metrics.partitioning(plan.partitions, plan.switch is not None)

    def _apply(
        self, held: frozenset[str], members: tuple[str, ...], released: set[int], at: float
    ) -> None:
        for name in list(self._renewed):
            if name not in held:
                del self._renewed[name]
        for name in held:
            self._renewed[name] = at
        self._draining -= released
        self._drained -= released
        if released and self._metrics is not None:
            self._metrics.partitions_handed_over(len(released))
        self._members = members
        mine = self._mine()
        for name in held - {SEQUENCER_LEASE}:
            p = int(name.removeprefix("partition-"))
            if p not in mine:
                self._draining.add(p)
        if self._metrics is not None:
            owned = sum(1 for name in held if name != SEQUENCER_LEASE)
            self._metrics.partitions_owned(owned, SEQUENCER_LEASE in held)

    def leave(self) -> None:
        """Stop; membership and leases go at once, so the others take over next heartbeat."""
        self.stopped.set()
        self._wake.set()
        if self.is_alive():
            self.join(self._ttl_s)  # a round under way would take the leases again
        try:
            self._store.leave(self._owner)
        except StoreError:  # the leases expire instead
            log.warning("could not leave the partition group", exc_info=True)
