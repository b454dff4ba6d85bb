"""What a store outage left behind in this process: keys still leased to us whose call ended
without a recorded outcome, and the outcomes the API gave that the store did not take.

A call whose API request was answered but whose ``complete`` met the outage has a definite
outcome: kept here, it is recorded when the command is tried again (or given back), so the
command's next run replays it instead of calling the API a second time (an uncertain key
of a command without a read-back, a profile update say, would be sent again). A key left
leased without an outcome is released as uncertain instead, so that its next claim
resolves by read-back rather than waiting out our lease. Any thread.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from worker.decision import Decision
from worker.store import IdempotencyStore


@dataclass(frozen=True)
class Unrecorded:
    """The arguments of the ``complete`` that failed, and the decision it was to give."""

    succeeded: bool
    event: bytes
    uncertain: bool
    decision: Decision


class LeftBehind:
    def __init__(self, store: IdempotencyStore, owner: str) -> None:
        self._store, self._owner = store, owner
        self._lock = threading.Lock()
        self._keys: set[str] = set()
        self._outcomes: dict[str, Unrecorded] = {}

    def add(self, key: str) -> None:
        with self._lock:
            self._keys.add(key)

    def keep_outcome(self, key: str, outcome: Unrecorded) -> None:
        with self._lock:
            self._keys.add(key)
            self._outcomes[key] = outcome

    def holds(self, key: str) -> bool:
        with self._lock:
            return key in self._keys

    def outcome(self, key: str) -> Unrecorded | None:
        with self._lock:
            return self._outcomes.get(key)

    def discard(self, key: str) -> None:
        with self._lock:
            self._keys.discard(key)
            self._outcomes.pop(key, None)

    def release(self, key: str) -> bool:
        """A key left leased without an outcome: released as uncertain, so the claim that
        follows resolves by read-back instead of waiting out our own lease. True if released."""
        if not self.holds(key):
            return False
        released = self._store.release(key, self._owner, True)
        self.discard(key)
        return released

    def let_go(self, key: str, customer: str | None) -> None:
        """The command of ``key`` went back to the broker: record the outcome the API gave
        it, or else release the key (uncertain if a call may have gone out), and its customer,
        so that its next owner replays or runs it without waiting out our leases. Raises
        ``StoreError`` while the store is down."""
        outcome = self.outcome(key)
        if outcome is not None:
            self._store.complete(
                key, self._owner, outcome.succeeded, outcome.event, outcome.uncertain
            )
        else:
            self._store.release(key, self._owner, self.holds(key))
        if customer is not None:
            self._store.unlock_customer(customer, self._owner)
        self.discard(key)
