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


@dataclass(frozen=True)
class Unrecorded:
    """The arguments of the ``complete`` that failed, and the decision it was to give."""

    succeeded: bool
    event: bytes
    uncertain: bool
    decision: Decision


class LeftBehind:
    def __init__(self) -> None:
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
