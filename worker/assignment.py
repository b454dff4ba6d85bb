"""Which member consumes which partition (``assigned``), and the deployment's partition count
with a change of it under way (``Partitioning``): what every member computes alike from the
store's rows, so that all agree without talking. The leases that carry it out are
``worker.partitions``; see docs/ordering.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# The sequencer's process takes this share of a partition owner's load: moving a command
# costs it ~0.2 ms of the ~2.2 ms a command costs its worker. With two processes, 16
# partitions split 8/8: at 0.85 (7/9) the other process, its API slots serving 9/16 of the
# commands, finished its share of a burst a second after the sequencer's (a call waited 92
# against 27 ms for its slot) while the sequencer's process had time to spare.
SEQUENCER_CAPACITY = 0.9


@dataclass(frozen=True)
class Partitioning:
    """The deployment's P as the store records it, this process's own, and a change under
    way (``switch``: ``drain:<P'>`` or ``release:<P'>``, see ``worker.repartition``)."""

    partitions: int
    configured: int
    switch: str | None = None
    agreed: int | None = None  # the P every live member is configured with, if they agree

    @property
    def releasing(self) -> bool:
        return (self.switch or "").startswith("release:")

    @property
    def to_change(self) -> bool:
        """A switch is under way, or every member wants another P than the deployment's."""
        wanted = self.configured != self.partitions and self.agreed == self.configured
        return self.switch is not None or wanted


def assigned(
    partitions: int, members: Sequence[str], me: str, sequencer: str | None = None
) -> frozenset[int]:
    """The partitions of ``me``. Each partition in turn goes to the member with the least
    load for its capacity (ties: the first in sorted order), so every member has its even
    share; the sequencer's process counts as ``SEQUENCER_CAPACITY`` of one, since it also
    moves every command of the intake (one process is a GIL's worth of CPU)."""
    ordered = sorted(members)
    if me not in ordered:
        return frozenset()
    capacity = {m: SEQUENCER_CAPACITY if m == sequencer else 1.0 for m in ordered}
    load = dict.fromkeys(ordered, 0)
    mine = set()
    for partition in range(partitions):
        owner = min(ordered, key=lambda m: ((load[m] + 1) / capacity[m], ordered.index(m)))
        load[owner] += 1
        if owner == me:
            mine.add(partition)
    return frozenset(mine)
