"""Riding out a store outage in place, where a delay tier would break a customer's order.

A partition's command that meets a store outage (a PostgreSQL failover, a locked SQLite file)
cannot go to a delay tier the way an unordered one does: the store cannot record the hold
that would park the customer's later commands, so they would overtake it as soon as the
store is back. Instead the command is tried again on its pool thread, with backoff, while
the customer's later commands wait behind it in the pool, unacked.

It waits as long as its delivery is still this process's to decide (``keep_waiting``), not
for a fixed time: an outage long enough to fence the partition's lease makes the consumer
close its channel (docs/ordering.md, "A store outage"), which returns every unacked
delivery to its partition in order; the wait then ends with ``OutageAbandonedError`` and the
delivery is left to the broker, never sent to a delay tier ahead of its successors.

Trying the whole gate again is safe: a command whose own call was cut by the outage left
its key marked uncertain and is resolved by read-back; a retry decision whose hold could not
be written simply runs again (a transient error retried a little sooner).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from worker.store import StoreError

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_BACKOFF_S = 0.2
MAX_BACKOFF_S = 2.0


class OutageAbandonedError(StoreError):
    """The store is still unreachable and the delivery is no longer this process's to
    decide (its channel closed, or the process stops): it goes back to its queue unacked."""


def ride_out_store_outage(
    task: Callable[[], T],
    keep_waiting: Callable[[], bool],
    sleep: Callable[[float], object],
) -> T:
    """``task()``, tried again on ``StoreError`` while ``keep_waiting()``; then
    ``OutageAbandonedError``. ``sleep`` waits between tries (an event's wait ends it early)."""
    backoff_s = FIRST_BACKOFF_S
    tries = 0
    while True:
        try:
            return task()
        except OutageAbandonedError:
            raise
        except StoreError as exc:
            tries += 1
            if tries == 1:
                fields = {"error": type(exc).__name__, "retry_in_s": backoff_s}
                log.warning(
                    "store unavailable; the command waits in place (its customer's order is kept)",
                    extra={"fields": fields},
                )
            if keep_waiting():
                sleep(backoff_s)
                backoff_s = min(backoff_s * 2, MAX_BACKOFF_S)
            if not keep_waiting():  # checked after the wait too: never run it once given back
                fields = {"error": type(exc).__name__, "tries": tries}
                log.warning(
                    "store still unavailable; the command goes back to its queue unacked",
                    extra={"fields": fields},
                )
                raise OutageAbandonedError(str(exc)) from exc


def let_go_after_outage(
    let_go: Callable[[], None], stopping: Callable[[], bool], sleep: Callable[[float], object]
) -> None:
    """``let_go()`` (release what a given-back command still holds in the store), tried with
    backoff until the store answers. The command's next owner, perhaps another process, would
    otherwise wait out our leases; its later commands here wait behind this, on its key. A
    process that stops gives up: its leases end with its heartbeat."""
    backoff_s = FIRST_BACKOFF_S
    while not stopping():
        try:
            let_go()
            return
        except StoreError:
            sleep(backoff_s)
            backoff_s = min(backoff_s * 2, MAX_BACKOFF_S)
