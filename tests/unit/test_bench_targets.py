"""The benchmark's verdicts: judged on the faster configuration, and a busy host called out."""

from __future__ import annotations

import itertools

from bench.measure import RunResult
from bench.targets import check_targets, verdict_line
from bench.throughput import TARGET_ROUNDS, is_compared, plan_runs


def run(
    mode: str, latency_ms: float, conc: int, per_s: float, steal: float, procs: int = 1
) -> RunResult:
    return RunResult(
        mode, latency_ms, conc, 2000, per_s, 1.0, 1.0, per_s / 2, 100, 55.0, 70.0,
        45.0, 0, 2.0, procs, 45.0 * procs, steal,
    )  # fmt: skip


def test_the_faster_configuration_is_judged_and_a_busy_host_is_named() -> None:
    # Given runs where the 50 ms, c32 run over two processes met a host 13 % busy elsewhere
    results = [
        run("raw", 0.0, 1, 500.0, 0.0),
        run("worker", 0.0, 32, 700.0, 0.0),
        run("worker", 0.0, 32, 800.0, 1.0, procs=2),
        run("worker", 50.0, 32, 440.0, 2.0),
        run("worker", 50.0, 32, 460.0, 13.0, procs=2),
    ]
    # When the targets are checked and printed
    lines = [verdict_line(t) for t in check_targets(results)]
    # Then each c32 target is the faster configuration's, and only the busy one says so
    assert lines[0] == "  0 ms, c32 vs raw loop [2 processes x 16]: 1.6 (goal >= 0.8) met"
    assert lines[1].startswith("  50 ms, c32 vs 640/s cap [2 processes x 16]: 0.719 (goal >= 0.9)")
    assert lines[1].endswith("MISSED (13 % steal in that run: rerun on a quiet host)")
    # And the one-process floors judge the one-process runs
    assert lines[2] == "  0 ms, c32, one process vs raw loop: 1.4 (goal >= 1.2) met"
    assert lines[3] == "  50 ms, c32, one process vs 640/s cap: 0.688 (goal >= 0.85) MISSED"
    assert "steal" not in lines[0] + lines[2] + lines[4]
    assert lines[4] == "  worker peak RSS MB (per process): 45.0 (goal <= 100.0) met"


def test_every_compared_configuration_runs_in_rounds_and_is_judged_on_its_best() -> None:
    # Given the full plan of make bench
    plan = plan_runs(stores_only=False)
    # Then every configuration a target reads runs TARGET_ROUNDS times, the others once
    for config in set(plan):
        expected = TARGET_ROUNDS if is_compared(config) else 1
        assert plan.count(config) == expected, config
    assert {c for c in plan if is_compared(c)} >= {
        ("raw", 0.0, 1, 1, "sqlite"),
        ("worker", 0.0, 32, 1, "sqlite"),
        ("worker", 50.0, 32, 1, "sqlite"),
        ("worker", 0.0, 32, 1, "postgresql"),
        ("worker", 0.0, 32, 2, "postgresql"),
    }
    # And no configuration runs twice in a row (a spell of steal would take both)
    assert all(a != b for a, b in itertools.pairwise(plan))
    # And of two runs of one configuration, the targets read the faster
    results = [
        run("raw", 0.0, 1, 500.0, 0.0),
        run("worker", 0.0, 32, 550.0, 0.0),
        run("raw", 0.0, 1, 450.0, 0.0),
        run("worker", 0.0, 32, 650.0, 0.0),
    ]
    first = next(t for t in check_targets(results) if "one process vs raw" in t["target"])
    assert first["value"] == 1.3
