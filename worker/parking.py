"""Order through delayed retries: holds and parked commands (docs/ordering.md, point 8).

When a command of ordering key K goes to a delay tier, K is *held* (durably, in the store)
by that command's idempotency key. While K is held, K's later commands arriving on the
partition are *parked* in the store and acked: nothing stays unacked towards the broker's
``consumer_timeout`` however long the delay. The held command comes back through the intake
and is recognised as the holder; once it reaches a terminal outcome the hold is cleared
(still present, with no holder, until its backlog is gone) and the parked commands run in
order, each removed after its outcome is confirmed; one that needs a delay holds K again.

Everything here runs on pool threads, inside the per-key serial executor: all of K's work
in this process runs one at a time, in order. ``Holds`` is this process's view of the holds
of the partitions it consumes, loaded from the store when it takes a partition.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pika

from worker.broker import headers as h
from worker.decision import Decision, Envelope
from worker.execute import Executor
from worker.routing import key_of
from worker.store.order import OrderStore, Parked
from worker.store.order_upkeep import OrderUpkeep

log = logging.getLogger(__name__)
PARKED = "parked"  # the outcome of a command parked behind its customer's hold
RETRY = "retry"


@dataclass
class Hold:
    holder: str | None  # the idempotency key in a delay tier; None: running the backlog
    partition: int
    draining: bool = False  # a chain of parked commands runs in this process
    # The holder, back and decided, its outcome not yet confirmed: still the holder in the
    # store until it is (``Holds.clear_finished``), so a crash meanwhile redelivers it first.
    finishing: str | None = None


class Holds:
    """This process's view of the holds of the partitions it consumes; any thread."""

    def __init__(self, store: OrderStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._holds: dict[str, Hold] = {}

    def load(self, partition: int) -> list[str]:
        """Read the partition's holds from the store; the keys whose backlog must run."""
        rows = self._store.holds_of(partition)
        for key, holder in list(rows.items()):
            if holder is not None and self._holder_still_parked(key, holder):
                self._store.set_hold(key, partition, None)
                rows[key] = None
        with self._lock:
            for key, holder in rows.items():
                self._holds[key] = Hold(holder, partition)
        return [key for key, holder in rows.items() if holder is None]

    def _holder_still_parked(self, key: str, holder: str) -> bool:
        """The holder is the first parked command: run from the backlog, it was decided
        for a delay tier, then its process died or lost its channel before that copy was
        confirmed and its row deleted. No copy of it comes back as the holder: the backlog
        runs again from it (a second delay-tier copy, if the first did get out, replays)."""
        parked = self._store.first_parked(key)
        return parked is not None and key_of(parked.body) == holder

    def forget(self, partition: int | None = None) -> None:
        with self._lock:
            for key in [k for k, h in self._holds.items() if partition in (None, h.partition)]:
                del self._holds[key]

    def get(self, key: str) -> Hold | None:
        with self._lock:
            hold = self._holds.get(key)
            return None if hold is None else dataclasses.replace(hold)

    def set(self, key: str, partition: int, holder: str | None) -> None:
        self._store.set_hold(key, partition, holder)
        with self._lock:
            hold = self._holds.setdefault(key, Hold(holder, partition))
            hold.holder, hold.finishing = holder, None

    def finish(self, key: str, holder: str) -> None:
        """The holder is decided; the store keeps naming it until its outcome is out."""
        with self._lock:
            hold = self._holds.get(key)
            if hold is not None and hold.holder == holder:
                hold.finishing = holder

    def clear_finished(self, key: str, holder: str) -> bool:
        """Once the finishing holder's outcome is confirmed: the hold has no holder any more
        (its backlog may run). False when it is not that holder's any more."""
        with self._lock:
            hold = self._holds.get(key)
            if hold is None or hold.holder != holder or hold.finishing != holder:
                return False
            partition = hold.partition
        self.set(key, partition, None)
        return True

    def adopt_release(self, key: str) -> None:
        """An operator cleared the holder in the store: this view follows."""
        with self._lock:
            hold = self._holds.get(key)
            if hold is not None:
                hold.holder, hold.finishing = None, None

    def begin_drain(self, key: str) -> int | None:
        """Mark K's backlog as running; its partition, or None when nothing is to run."""
        with self._lock:
            hold = self._holds.get(key)
            if hold is None or hold.holder is not None or hold.draining:
                return None
            hold.draining = True
            return hold.partition

    def end_drain(self, key: str) -> None:
        with self._lock:
            hold = self._holds.get(key)
            if hold is not None:
                hold.draining = False

    def drop_if_empty(self, key: str) -> bool:
        if not self._store.drop_hold_if_empty(key):
            return False
        with self._lock:
            self._holds.pop(key, None)
        return True


def encode_properties(properties: Any) -> bytes:
    return b"".join(properties.encode())


def parked_properties(properties: Any, redelivered: bool) -> bytes:
    """What the store keeps of a parked command's properties. A redelivered command stays
    marked as one (``RESEQUENCED``): run from the store it is no delivery, whose broker count
    is believed only on a redelivery. Unmarked, a copy parked twice (parked, then returned by
    the broker before that park was acked: a kill) would run after the first copy's outcome
    as a first delivery, and a failed key runs again: a second terminal event."""
    if redelivered:
        properties = copy.copy(properties)
        headers = properties.headers if isinstance(properties.headers, dict) else {}
        properties.headers = {**headers, h.RESEQUENCED: 1}
    return encode_properties(properties)


def decode_properties(data: bytes) -> Any:
    properties = pika.BasicProperties()
    properties.decode(data)
    return properties


@dataclass(frozen=True)
class ParkedRun:
    """One parked command run from the store: what to publish for it."""

    parked: Parked
    properties: Any
    envelope: Envelope
    decision: Decision


class OrderGate:
    """Between a delivery and the executor: park, hold, release."""

    def __init__(
        self,
        executor: Executor,
        store: OrderUpkeep,
        holds: Holds,
        envelope_of: Callable[[Any, bytes], Envelope],
        metrics: Any = None,
    ) -> None:
        self._executor, self._store, self._holds = executor, store, holds
        self._envelope_of, self._metrics = envelope_of, metrics

    def process(
        self,
        envelope: Envelope,
        key: str,
        partition: int,
        routing_key: str,
        properties: Any,
        body: bytes,
    ) -> Decision:
        hold = self._holds.get(key)
        own_key = envelope.command.idempotency_key if envelope.command is not None else None
        if (
            own_key is not None
            and envelope.delayed_attempts
            and (hold is None or hold.holder != own_key)
        ):
            self._note_released_holder(own_key)
        if hold is not None and (hold.holder is None or hold.holder != own_key):
            stored = parked_properties(properties, envelope.delivery_count > 0)
            self._store.park(key, partition, routing_key, stored, body)
            if self._metrics is not None:
                self._metrics.command_held()
            return Decision(_command_type(envelope), PARKED)
        return self._run(envelope, key, partition, hold)

    def _note_released_holder(self, own_key: str) -> None:
        """Back from a delay tier, yet not holding its customer: an operator may have
        released it (``provisioner order release``). It runs after the commands it held (or
        is parked behind those still waiting); said loudly, since that is out of publish
        order. One store read, only for such a rare delivery."""
        order_key = self._store.take_released(own_key)
        if order_key is None:
            return
        fields = {"idempotency_key": own_key, "order_key": order_key}
        log.warning(
            "a released holder came back: it runs after the commands it held",
            extra={"fields": fields},
        )
        if self._metrics is not None:
            self._metrics.released_holder_returned()

    def _run(self, envelope: Envelope, key: str, partition: int, hold: Hold | None) -> Decision:
        decision = self._executor.process(envelope)
        own_key = envelope.command.idempotency_key if envelope.command is not None else None
        if decision.outcome == RETRY and own_key is not None:
            # Durable before the delay-tier copy is published: a crash redelivers the holder.
            self._holds.set(key, partition, own_key)
            if self._metrics is not None and hold is None:
                self._metrics.customer_held()
        elif hold is not None and own_key is not None:
            # The holder is done: the hold is cleared, and its backlog runs, once this
            # outcome is confirmed (``worker.backlogs``): a crash before that redelivers
            # the holder, which replays its outcome ahead of the commands it held.
            self._holds.finish(key, own_key)
        return decision

    def run_parked(self, key: str, partition: int, done_seq: int | None) -> ParkedRun | None:
        """Remove the parked command just carried out; run the next. None: stop here (the
        backlog is gone, or a command of it holds the key again)."""
        if done_seq is not None:
            self._store.unpark(key, done_seq)
        hold = self._holds.get(key)
        if hold is None or hold.holder is not None:
            return None
        parked = self._store.first_parked(key)
        if parked is None:
            self._holds.drop_if_empty(key)
            return None
        properties = decode_properties(parked.properties)
        envelope = self._envelope_of(properties, parked.body)
        if not envelope.delivery_count:
            # Stored as run once before it runs: a crash before its row is deleted runs it
            # again from the store, as the redelivery it then is (a replay of its outcome,
            # not a failed key run anew).
            self._store.repark(key, parked.seq, parked_properties(properties, True))
        decision = self._run(envelope, key, partition, None)
        return ParkedRun(parked, properties, envelope, decision)

    def let_go_parked(self, key: str) -> None:
        """Release what the first parked command of ``key`` (the one a store outage cut)
        may still hold here; it stays parked for the partition's next consumption."""
        parked = self._store.first_parked(key)
        if parked is not None:
            envelope = self._envelope_of(decode_properties(parked.properties), parked.body)
            if envelope.command is not None:
                self._executor.let_go(envelope.command)


def _command_type(envelope: Envelope) -> str:
    if envelope.command is not None:
        return type(envelope.command).__name__
    return (envelope.invalid.command_type if envelope.invalid else None) or "unknown"


class NotParked:
    """The outcome reporter, told nothing of a command parked: its outcome comes later."""

    def __init__(self, observer: Any) -> None:
        self._observer = observer

    def command_done(self, envelope: Envelope, decision: Decision, duration_s: float) -> None:
        if self._observer is not None and decision.outcome != PARKED:
            self._observer.command_done(envelope, decision, duration_s)

    def command_crashed(self, envelope: Envelope, exc: BaseException) -> None:
        if self._observer is not None:
            self._observer.command_crashed(envelope, exc)
