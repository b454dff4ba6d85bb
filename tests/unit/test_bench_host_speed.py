"""The benchmark's control for the host: each core's speed through a run, and the verdicts
that say when a core ran slowed."""

from __future__ import annotations

import os

from bench.host_speed import MIN_SAMPLES, HostSpeed, core_speeds_pct
from bench.measure import RunResult
from bench.targets import postgres_targets, verdict_line
from tests.fixtures.wait import wait_until

MS = 1_000_000  # ns


def test_each_core_is_judged_by_its_median_in_the_window_against_the_fastest_sample() -> None:
    # Given core 0 at full speed, core 1 shared (1.6 x the time) in the window, and a core 1
    # that was faster still before the window, and core 2 with too few samples in it
    samples = [(0, 1, 0.0008)]
    samples += [(100 * MS + i, 0, 0.0009) for i in range(MIN_SAMPLES + 2)]
    samples += [(100 * MS + i, 1, 0.00128) for i in range(MIN_SAMPLES + 2)]
    samples += [(100 * MS + i, 2, 0.0008) for i in range(MIN_SAMPLES - 1)]
    samples += [(900 * MS, 1, 0.0008)]
    # When the window from 50 to 500 ms is judged
    speeds = core_speeds_pct(samples, 50 * MS, 500 * MS)
    # Then each core's median counts against the fastest chunk seen at all, out of the window
    # too, and a core with too few samples says nothing
    assert speeds == {0: 88.9, 1: 62.5}
    assert core_speeds_pct([], 0, 1) == {}


def run_at(per_s: float, procs: int, cores: list[float]) -> RunResult:
    return RunResult(
        "worker", 0.0, 32, 2000, per_s, 1.0, 1.0, per_s / 2, 100, 55.0, 70.0, 45.0, 0, 2.0,
        procs, 45.0 * procs, 0.0, "postgresql", cores,
    )  # fmt: skip


def test_a_verdict_names_a_core_that_ran_slowed_in_a_run_it_compares() -> None:
    # Given PostgreSQL runs where the two-process run had one core at 61 % of its speed
    sqlite = RunResult(
        "worker", 0.0, 32, 2000, 900.0, 1.0, 1.0, 450.0, 100, 55.0, 70.0, 45.0, 0, 2.0,
        1, 45.0, 0.0, "sqlite", [97.0, 95.0],
    )  # fmt: skip
    results = [sqlite, run_at(800.0, 1, [96.0, 99.0]), run_at(880.0, 2, [61.0, 90.0])]
    # When the PostgreSQL targets are printed
    vs_sqlite, scale = (verdict_line(t) for t in postgres_targets(results))
    # Then the scale verdict says the host was busy, and the other does not
    assert scale == (
        "  0 ms, c32, PostgreSQL 2 processes vs 1: 1.1 (goal >= 1.2) MISSED"
        " (a core at 61 % of its speed in that run: rerun on a quiet host)"
    )
    assert (
        vs_sqlite == "  0 ms, c32, PostgreSQL vs SQLite (1 process each): 0.889 (goal >= 0.8) met"
    )


def test_the_probe_samples_every_core_and_stops() -> None:
    # Given the probe started as the benchmark starts it
    host = HostSpeed()
    host.start()
    assert host.running
    try:
        # When it has run for a moment
        cores = set(os.sched_getaffinity(0))
        wait_until(lambda: {core for _, core, _ in host.samples()} >= cores, 20.0, "samples")
    finally:
        host.stop()
    # Then every core was timed, each chunk took some CPU, and the child is gone
    samples = host.samples()
    assert all(seconds > 0 for _, _, seconds in samples)
    speeds = host.speeds_pct(samples[0][0], samples[-1][0])
    assert set(speeds) <= cores and all(0 < pct <= 100 for pct in speeds.values())
    assert not host.running
