"""Riding out a short store outage in place, where a delay tier would break a customer's order.

A partition's command that meets a store outage (a PostgreSQL failover, a locked SQLite file)
cannot go to a delay tier the way an unordered one does: the store cannot record the hold
that would park the customer's later commands, so they would overtake it as soon as the
store is back. Instead the command is tried again on its pool thread, with backoff, while
the customer's later commands wait behind it in the pool (unacked, far below RabbitMQ's
``consumer_timeout``). The wait is bounded by ``budget_s``: the consumer passes the time
before its partition leases fence themselves, because past it another process may own the
partition; then the outage is handled like any other (a delay tier with its reason).

Trying the whole gate again is safe: a command whose own call was cut by the outage left
its key marked uncertain and is resolved by read-back; a retry decision whose hold could not
be written simply runs again (a transient error retried a little sooner).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from worker.store import StoreError

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_BACKOFF_S = 0.2
MAX_BACKOFF_S = 2.0


def ride_out_store_outage(
    task: Callable[[], T],
    budget_s: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> T:
    """``task()``, tried again on ``StoreError`` until ``budget_s`` would be exceeded."""
    deadline = monotonic() + budget_s
    backoff_s = FIRST_BACKOFF_S
    while True:
        try:
            return task()
        except StoreError as exc:
            if monotonic() + backoff_s > deadline:
                raise
            fields = {"error": type(exc).__name__, "retry_in_s": backoff_s}
            log.warning(
                "store unavailable; the command waits in place (its customer's order is kept)",
                extra={"fields": fields},
            )
            sleep(backoff_s)
            backoff_s = min(backoff_s * 2, MAX_BACKOFF_S)
