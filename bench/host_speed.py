"""How fast each core of the VM ran around a run: the benchmark's control for the host.

On the 2-core VM the benchmark runs on, a core does not always run at one speed: with the
machine idle, the same fixed piece of Python took 1.4-1.8 x as much CPU time on a core the
host was sharing with another guest as on a core at full speed, and each core flips between
the two by itself within seconds (docs/performance.md, "A core at two speeds"). The
kernel's steal counter does not see it (it stayed at 0 %). A run with one core slowed is a
slower machine: two worker processes, which need both cores, lose more than one, so
comparing runs without this says more about the host than about the worker.

``HostSpeed.probe`` times that piece of Python on each core in turn for half a second, on
the benchmark's own thread, and gives each core's median speed as a percentage of the
fastest piece it has timed at all. ``measure`` probes just before the consumer starts and
just after the burst's last event, when nothing of the run is busy, and keeps each core's
slower reading: the phases of the host last seconds, about a burst's length. Probing
during the burst does not work: a probe at normal priority takes CPU from the run, and a
niced one gets a few samples in the gaps and reads our own load (the caches of a machine
switching threads 30,000 times a second) as a slow core.
"""

from __future__ import annotations

import os
import statistics
import time

CHUNK_ITERATIONS = 20_000  # ~0.9 ms of CPU at full speed here
PROBE_S = 0.5  # each probe, all cores together
# The first probe, before any run, finds full speed: long enough to time a core at it even
# while the host is busy. In the busiest spell seen (both cores slowed in 15 of 20 readings)
# it found a fastest piece of 0.91 ms, three times, against 0.86 ms on a quiet host.
CALIBRATE_S = 5.0
# A run whose slower core ran below this share of full speed ran on a busy host: a core at
# full speed reads 95-100 %, a core the host shares 50-70 %.
SLOWED_CORE_PCT = 80.0


def chunk() -> float:
    """CPU seconds one fixed piece of Python takes on the current core."""
    started = time.thread_time()
    total = 0
    for i in range(CHUNK_ITERATIONS):
        total += i * i % 7
    return time.thread_time() - started


class HostSpeed:
    """Probes of each core's speed against the fastest piece timed over the benchmark."""

    def __init__(self) -> None:
        self._fastest_s = float("inf")

    def probe(self, duration_s: float = PROBE_S) -> dict[int, float]:
        """Each core's median speed over ``duration_s``, % of the fastest piece seen."""
        cores = sorted(os.sched_getaffinity(0))
        times: dict[int, list[float]] = {core: [] for core in cores}
        deadline = time.monotonic() + duration_s
        try:
            while time.monotonic() < deadline:
                for core in cores:
                    os.sched_setaffinity(0, {core})  # this thread only
                    times[core].append(chunk())
        finally:
            os.sched_setaffinity(0, cores)
        self._fastest_s = min([self._fastest_s, *(min(t) for t in times.values())])
        return {core: speed_pct(t, self._fastest_s) for core, t in times.items()}


def speed_pct(times: list[float], fastest_s: float) -> float:
    """The median of ``times`` against the fastest piece: 100 is full speed."""
    return round(100.0 * fastest_s / statistics.median(times), 1)


def slower_of(*probes: dict[int, float]) -> list[float]:
    """Per core, the lower of its readings."""
    cores = sorted(set().union(*probes))
    return [min(p[core] for p in probes if core in p) for core in cores]
