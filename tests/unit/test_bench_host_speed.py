"""The benchmark's control for the host: each core's speed around a run, and the verdicts
that say when a core ran slowed."""

from __future__ import annotations

import os

from bench.host_speed import HostSpeed, slower_of, speed_pct
from bench.measure import RunResult
from bench.targets import postgres_targets, verdict_line


def test_a_core_reads_its_median_against_the_fastest_piece_and_keeps_its_slower_reading() -> None:
    # Given a core at full speed and one the host shares (1.6 x the time), with an outlier
    fastest_s = 0.0008
    full = [0.0008, 0.00082, 0.0008, 0.003]
    shared = [0.00128, 0.00128, 0.0013]
    # When each is read, and two probes of the same cores are combined
    readings = speed_pct(full, fastest_s), speed_pct(shared, fastest_s)
    combined = slower_of({0: 99.0, 1: 62.5}, {0: 71.0, 1: 97.0})
    # Then the median ignores the outlier, and each core keeps its slower reading
    assert readings == (98.8, 62.5)
    assert combined == [71.0, 62.5]


def test_a_probe_times_every_core_and_gives_the_thread_back_all_of_them() -> None:
    # Given the cores this process may run on
    cores = os.sched_getaffinity(0)
    # When the host is probed twice, as a run does
    host = HostSpeed()
    first, second = host.probe(0.2), host.probe(0.2)
    # Then each probe read every core, at no more than full speed, and the affinity is back
    assert set(first) == set(second) == cores
    assert all(0 < pct <= 100 for pct in [*first.values(), *second.values()])
    assert os.sched_getaffinity(0) == cores


def run_at(per_s: float, procs: int, cores: list[float], store: str = "postgresql") -> RunResult:
    return RunResult(
        "worker", 0.0, 32, 2000, per_s, 1.0, 1.0, per_s / 2, 100, 55.0, 70.0, 45.0, 0, 2.0,
        procs, 45.0 * procs, 0.0, store, cores,
    )  # fmt: skip


def test_a_verdict_names_a_core_that_ran_slowed_in_a_run_it_compares() -> None:
    # Given PostgreSQL runs where the two-process run had one core at 61 % of its speed
    results = [
        run_at(900.0, 1, [97.0, 95.0], store="sqlite"),
        run_at(800.0, 1, [96.0, 99.0]),
        run_at(880.0, 2, [61.0, 90.0]),
    ]
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
