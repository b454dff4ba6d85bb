"""``make bench``: the worker's throughput, latency and memory against the raw limit.

``python -m bench.throughput [--commands N] [--quick]`` runs the raw single-threaded loop at
0 ms, then, for API latency 0 and 50 ms, the worker as one process at concurrency 1, 8 and 32
and as one process per core (``--processes``, the concurrency split between them) at 8 and
32; each run on a fresh topology, a fresh SQLite store and a reset sandbox. Then the same
at 0 ms, c32 on PostgreSQL (a fresh schema per run), as one process and as two. It prints a
table and the targets (judged on the better of the two c32 configurations, which it names)
and writes ``.bench/results.json``. It exits 0 even when a target is missed (it says MISSED).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from pika.exceptions import AMQPError

from bench.measure import RunResult, measure, raw_starter, worker_starter
from bench.rig import SandboxProcess, postgres_store, reset_sandbox
from sandbox.rigs import WaitTimeoutError

API_LATENCIES_MS = (0.0, 50.0)
CONCURRENCIES = (1, 8, 32)
MULTI_PROCESS_CONCURRENCIES = (8, 32)
PROCESSES = max(2, os.cpu_count() or 1)  # one per core
COMMANDS = 2000
QUICK_COMMANDS = 500
# Enough commands for a few seconds of events at the rate a latency caps a run at.
SECONDS_OF_WORK_AT_CAP = 4.0
MIN_COMMANDS = 40
RAW_SHARE_TARGET = 0.8  # worker at 0 ms, concurrency 32, vs the raw loop
CAP_SHARE_TARGET = 0.9  # worker at 50 ms, concurrency 32, vs concurrency / latency
# The floors for one process at concurrency 32 (issue #14: the HTTP client is urllib3, not
# hand-written): 0 ms vs the raw loop, 50 ms vs concurrency / latency.
ONE_PROCESS_RAW_SHARE_FLOOR = 1.2
ONE_PROCESS_CAP_SHARE_FLOOR = 0.85
STEAL_WARN_PCT = 5.0  # above this, a verdict line says the host was busy
PEAK_RSS_TARGET_MB = 100.0
PG_PROCESSES = 2
PG_VS_SQLITE_TARGET = 0.8  # PostgreSQL vs SQLite, one process each, 0 ms, c32
PG_SCALE_TARGET = 1.2  # PostgreSQL, two processes vs one, 0 ms, c32 (on two cores)
SQLITE, POSTGRES = "sqlite", "postgresql"
RESULTS_PATH = Path(".bench/results.json")
RUN_ATTEMPTS = 2
RETRY_PAUSE_S = 10.0


def commands_for(latency_ms: float, concurrency: int, budget: int) -> int:
    if latency_ms <= 0:
        return budget
    cap_per_s = concurrency * 1000.0 / latency_ms
    return max(MIN_COMMANDS, min(budget, int(cap_per_s * SECONDS_OF_WORK_AT_CAP)))


def plan_runs(stores_only: bool) -> list[tuple[str, float, int, int, str]]:
    """(mode, API ms, concurrency, processes, store) of every run, in order; with
    ``stores_only`` just the three the PostgreSQL targets compare."""
    plan = [("raw", 0.0, 1, 1, SQLITE)]
    for latency_ms in API_LATENCIES_MS:
        plan += [("worker", latency_ms, c, 1, SQLITE) for c in CONCURRENCIES]
        plan += [("worker", latency_ms, c, PROCESSES, SQLITE) for c in MULTI_PROCESS_CONCURRENCIES]
    if stores_only:
        plan = [("worker", 0.0, 32, 1, SQLITE)]
    return plan + [("worker", 0.0, 32, n, POSTGRES) for n in (1, PG_PROCESSES)]


def run_all(budget: int, stores_only: bool = False) -> list[RunResult]:
    plan = plan_runs(stores_only)
    sandbox = SandboxProcess()
    results: list[RunResult] = []
    try:
        for mode, latency_ms, concurrency, processes, store in plan:
            result = run_one(sandbox, mode, latency_ms, concurrency, processes, budget, store)
            if result is not None:
                results.append(result)
                print(format_row(result), flush=True)
    finally:
        sandbox.stop()
    return results


def run_one(
    sandbox: SandboxProcess,
    mode: str,
    latency_ms: float,
    concurrency: int,
    processes: int,
    budget: int,
    store: str = SQLITE,
) -> RunResult | None:
    """One measured run; retried once when it broke (e.g. the broker restarted under it)."""
    count = commands_for(latency_ms, concurrency, budget) if mode == "worker" else budget
    for attempt in range(1, RUN_ATTEMPTS + 1):
        label = f"{mode}, {latency_ms:.0f} ms, concurrency {concurrency}, {processes} process"
        print(f"{label}, {store} ({count} commands) ...", flush=True)
        try:
            reset_sandbox(sandbox, latency_ms)
            with contextlib.ExitStack() as stack:
                store_url = None
                if store == POSTGRES:
                    store_url = stack.enter_context(postgres_store(f"bench{uuid.uuid4().hex[:8]}"))
                starter = (
                    raw_starter(sandbox)
                    if mode == "raw"
                    else worker_starter(sandbox, concurrency, processes, store_url)
                )
                result = measure(mode, latency_ms, concurrency, count, starter, processes)
            return dataclasses.replace(result, store=store)
        except (AMQPError, RuntimeError, WaitTimeoutError, OSError, psycopg.Error) as exc:
            print(f"  run failed (attempt {attempt}): {type(exc).__name__}: {exc}", flush=True)
            time.sleep(RETRY_PAUSE_S)  # let a restarting broker come back
    return None


def format_table(results: list[RunResult]) -> str:
    return "\n".join([HEADER, "-" * len(HEADER)] + [format_row(r) for r in results])


def format_row(r: RunResult) -> str:
    return (
        f"{r.mode:<7}{r.api_latency_ms:>7.0f}{r.processes:>6}{r.concurrency:>6}{r.commands:>6}"
        f"{r.commands_per_s:>9.1f}{r.paced_per_s:>9.1f}{r.paced_p50_ms:>9.1f}"
        f"{r.paced_p99_ms:>9.1f}{r.burst_p50_ms:>11.0f}{r.peak_rss_mb:>8.1f}"
        f"{r.cpu_ms_per_command:>8.2f}{r.not_succeeded:>5}{r.steal_pct:>7.0f}  {r.store}"
    )


HEADER = (
    f"{'mode':<7}{'API ms':>7}{'proc':>6}{'conc':>6}{'N':>6}{'cmd/s':>9}"
    f"{'paced/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
    f"{'burst p50':>11}{'RSS MB':>8}{'CPU ms':>8}{'!ok':>5}{'steal%':>7}  store"
)


def find(
    results: list[RunResult],
    mode: str,
    latency_ms: float,
    conc: int,
    store: str = SQLITE,
    processes: int | None = None,
) -> RunResult | None:
    """The faster of the runs with this mode, latency, concurrency and store (any process
    count unless ``processes`` is given)."""
    wanted = (mode, latency_ms, conc, store)
    runs = [
        r
        for r in results
        if (r.mode, r.api_latency_ms, r.concurrency, r.store) == wanted
        and processes in (None, r.processes)
    ]
    return max(runs, key=lambda r: r.commands_per_s, default=None)


def check_targets(results: list[RunResult]) -> list[dict[str, Any]]:
    raw = find(results, "raw", 0.0, 1)
    fast = find(results, "worker", 0.0, 32)
    slow = find(results, "worker", 50.0, 32)
    cap = 32 * 1000.0 / 50.0
    # Per process: with several, each is a whole worker and the machine holds their sum.
    peaks = [r.peak_rss_mb for r in results if r.mode == "worker"]
    share = fast.commands_per_s / raw.commands_per_s if fast and raw else None
    cap_share = slow.commands_per_s / cap if slow else None
    steal = max((r.steal_pct for r in (raw, fast) if r), default=0.0)
    return [
        _target(f"0 ms, c32 vs raw loop{_config(fast)}", share, RAW_SHARE_TARGET, "x", steal),
        _target(
            f"50 ms, c32 vs 640/s cap{_config(slow)}",
            cap_share,
            CAP_SHARE_TARGET,
            "x",
            slow.steal_pct if slow else 0.0,
        ),
        *one_process_floors(results, raw, cap),
        _target(
            "worker peak RSS MB (per process)",
            max(peaks, default=None),
            PEAK_RSS_TARGET_MB,
            "MB",
            at_most=True,
        ),
        *postgres_targets(results),
    ]


def one_process_floors(
    results: list[RunResult], raw: RunResult | None, cap: float
) -> list[dict[str, Any]]:
    """The same two c32 runs in one process, against their floors."""
    fast = find(results, "worker", 0.0, 32, SQLITE, processes=1)
    slow = find(results, "worker", 50.0, 32, SQLITE, processes=1)
    share = fast.commands_per_s / raw.commands_per_s if fast and raw else None
    steal = max((r.steal_pct for r in (raw, fast) if r), default=0.0)
    return [
        _target(
            "0 ms, c32, one process vs raw loop", share, ONE_PROCESS_RAW_SHARE_FLOOR, "x", steal
        ),
        _target(
            "50 ms, c32, one process vs 640/s cap",
            slow.commands_per_s / cap if slow else None,
            ONE_PROCESS_CAP_SHARE_FLOOR,
            "x",
            slow.steal_pct if slow else 0.0,
        ),
    ]


def postgres_targets(results: list[RunResult]) -> list[dict[str, Any]]:
    """PostgreSQL keeps up with SQLite in one process, and a second process adds to it."""
    sqlite_one = find(results, "worker", 0.0, 32, SQLITE, processes=1)
    pg_one = find(results, "worker", 0.0, 32, POSTGRES, processes=1)
    pg_two = find(results, "worker", 0.0, 32, POSTGRES, processes=PG_PROCESSES)

    def ratio(a: RunResult | None, b: RunResult | None) -> float | None:
        return a.commands_per_s / b.commands_per_s if a and b else None

    def steal(*runs: RunResult | None) -> float:
        return max((r.steal_pct for r in runs if r), default=0.0)

    return [
        _target(
            "0 ms, c32, PostgreSQL vs SQLite (1 process each)",
            ratio(pg_one, sqlite_one),
            PG_VS_SQLITE_TARGET,
            "x",
            steal(pg_one, sqlite_one),
        ),
        _target(
            f"0 ms, c32, PostgreSQL {PG_PROCESSES} processes vs 1",
            ratio(pg_two, pg_one),
            PG_SCALE_TARGET,
            "x",
            steal(pg_two, pg_one),
        ),
    ]


def _config(run: RunResult | None) -> str:
    if run is None:
        return ""
    threads = max(1, run.concurrency // run.processes)
    return f" [{run.processes} process{'es' if run.processes > 1 else ''} x {threads}]"


def _target(
    name: str,
    value: float | None,
    goal: float,
    unit: str,
    steal_pct: float = 0.0,
    *,
    at_most: bool = False,
) -> dict[str, Any]:
    found = {"target": name, "goal": goal, "unit": unit, "steal_pct": round(steal_pct, 1)}
    if value is None:  # its run failed twice
        return {**found, "value": None, "met": False}
    met = value <= goal if at_most else value >= goal
    return {**found, "value": round(value, 3), "met": met}


def verdict_line(target: dict[str, Any]) -> str:
    met, value = target["met"], target["value"]
    verdict = "met" if met else "MISSED" if value is not None else "NOT MEASURED"
    sign = "<=" if target["unit"] == "MB" else ">="
    line = f"  {target['target']}: {value} (goal {sign} {target['goal']}) {verdict}"
    if target["steal_pct"] >= STEAL_WARN_PCT:
        # Another guest had the cores: the figure says more about the host than the worker.
        line += f" ({target['steal_pct']:.0f} % steal in that run: rerun on a quiet host)"
    return line


def machine() -> dict[str, Any]:
    def run(*cmd: str) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()
        except OSError:
            return "unknown"

    return {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg_at_start": os.getloadavg(),
        "rabbitmq": run("rabbitmqctl", "version"),
        "kernel": platform.release(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--commands", type=int, help=f"commands per run (default {COMMANDS})")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_COMMANDS} per run")
    parser.add_argument(
        "--stores", action="store_true", help="only SQLite and PostgreSQL at 0 ms, c32"
    )
    args = parser.parse_args(argv)
    budget = args.commands or (QUICK_COMMANDS if args.quick else COMMANDS)
    info = machine()
    try:
        results = run_all(budget, args.stores)
    except Exception as exc:  # the benchmark could not run at all
        print(f"bench: could not run: {exc}", file=sys.stderr)
        return 1
    print()
    print(format_table(results))
    print("cmd/s: first to last event of a pre-published burst; p50/p99: publish to event")
    print("receipt in a paced phase at half that rate; burst p50 includes queueing;")
    print("CPU ms: the consumer's processes' CPU time per command (start-up included);")
    print("steal%: CPU the hypervisor gave other guests during the run (a VM's cores are")
    print("that much smaller; compare runs with similar steal).")
    targets = postgres_targets(results) if args.stores else check_targets(results)
    for t in targets:
        print(verdict_line(t))
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": info, "runs": [r.as_dict() for r in results], "targets": targets}
    RESULTS_PATH.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"results written to {RESULTS_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
