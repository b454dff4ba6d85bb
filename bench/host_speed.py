"""How fast each core of the VM ran during a run: the benchmark's control for the host.

On the 2-core VM the benchmark runs on, a core does not always run at one speed: with the
machine idle, the same fixed piece of Python took 1.4-1.8 x as much CPU time on a core the
host was sharing with another guest as on a core at full speed, and each core flips between
the two by itself within seconds (docs/performance.md, "A core at two speeds"). The
kernel's steal counter does not see it (it stayed at 0 %). A run with one core slowed is a
slower machine: two worker processes, which need both cores, lose more than one, so
comparing runs without this says more about the host than about the worker.

``python -m bench.host_speed`` times that piece of Python on each core in turn and prints
``<time ns> <core> <CPU seconds>`` per sample. The piece is short (~0.1 ms) and the probe
runs at normal priority, so a loaded machine still schedules it promptly and seldom cuts a
sample in two: niced, it got 1-12 samples in 3 s under a full load, and those read slow.
It costs each core ~0.5 %, every run alike. ``HostSpeed`` runs it for the whole benchmark
and says, for a window of time, each core's median speed as a percentage of the fastest
sample seen (a run of our own processes costs the probe ~10 % of that by itself, through
the caches: see ``SLOWED_CORE_PCT``).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import IO

CHUNK_ITERATIONS = 2_000  # ~0.1 ms of CPU at full speed here
SAMPLE_PAUSE_S = 0.02  # between two rounds over the cores
MIN_SAMPLES = 3  # in a window, per core, to say anything about that core
# A run whose slower core ran below this share of full speed ran on a busy host. A full load
# of our own took the probe to 83-90 % of its idle speed; a shared core reads 55-70 %.
SLOWED_CORE_PCT = 75.0

Sample = tuple[int, int, float]  # (time.time_ns(), core, CPU seconds of one chunk)


def chunk() -> float:
    """CPU seconds one fixed piece of Python takes on the current core."""
    started = time.thread_time()
    total = 0
    for i in range(CHUNK_ITERATIONS):
        total += i * i % 7
    return time.thread_time() - started


def core_speeds_pct(samples: list[Sample], start_ns: int, end_ns: int) -> dict[int, float]:
    """Each core's median speed between ``start_ns`` and ``end_ns`` as a percentage of the
    fastest chunk in ``samples`` (all of them: the whole benchmark so far)."""
    if not samples:
        return {}
    fastest = min(seconds for _, _, seconds in samples)
    by_core: dict[int, list[float]] = {}
    for at_ns, core, seconds in samples:
        if start_ns <= at_ns <= end_ns:
            by_core.setdefault(core, []).append(seconds)
    return {
        core: round(100.0 * fastest / statistics.median(times), 1)
        for core, times in sorted(by_core.items())
        if len(times) >= MIN_SAMPLES
    }


class HostSpeed:
    """The probe as a child process for the life of the benchmark, its samples kept."""

    def __init__(self) -> None:
        self._samples: list[Sample] = []
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.host_speed"], stdout=subprocess.PIPE, text=True
        )
        assert self._process.stdout is not None
        self._reader = threading.Thread(
            target=self._read, args=(self._process.stdout,), name="host-speed", daemon=True
        )
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with contextlib.suppress(ValueError):
                at_ns, core, seconds = line.split()
                with self._lock:
                    self._samples.append((int(at_ns), int(core), float(seconds)))

    def samples(self) -> list[Sample]:
        with self._lock:
            return list(self._samples)

    def speeds_pct(self, start_ns: int, end_ns: int) -> dict[int, float]:
        return core_speeds_pct(self.samples(), start_ns, end_ns)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(timeout=10)


def main() -> None:
    cores = sorted(os.sched_getaffinity(0))
    while True:
        for core in cores:
            os.sched_setaffinity(0, {core})
            seconds = chunk()
            print(time.time_ns(), core, f"{seconds:.6f}", flush=True)
        time.sleep(SAMPLE_PAUSE_S)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        main()
