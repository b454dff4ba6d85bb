"""One measured run: pre-publish a burst, start the consumer, time the events, then pace.

Two latencies, because they answer different questions: the burst's (publish to event while
N commands wait in the queue) is mostly queueing, so the table's p50/p99 come from a paced
phase that publishes at half the measured rate, where publish-to-event is the real
end-to-end latency of one command.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.host_speed import HostSpeed, slower_of
from bench.rig import AMQP_URL, BenchBroker, EventTap, SandboxProcess, create_customer
from sandbox.rigs import wait_until

PACED_FRACTION = 0.5  # paced phase publishes at this share of the measured burst rate
PACED_DURATION_S = 3.0
PACED_MIN_COMMANDS = 20
START_TIMEOUT_S = 30.0
EVENTS_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0

StartConsumer = Callable[[BenchBroker, Path], "subprocess.Popen[bytes]"]


@dataclass
class RunResult:
    mode: str  # "worker" or "raw"
    api_latency_ms: float
    concurrency: int  # commands at once in all: processes x threads per process
    commands: int
    commands_per_s: float
    burst_p50_ms: float
    burst_p99_ms: float
    paced_per_s: float
    paced_commands: int
    paced_p50_ms: float
    paced_p99_ms: float
    peak_rss_mb: float
    not_succeeded: int
    cpu_ms_per_command: float  # every process of the consumer together
    processes: int = 1
    total_rss_mb: float = 0.0  # the peaks of every process of the consumer, added up
    steal_pct: float = 0.0  # CPU time the hypervisor gave to other guests during the run
    store: str = "sqlite"  # or "postgresql": the idempotency store the worker used
    # Each core's speed around the burst, % of full (``bench.host_speed``); empty: not probed
    core_speed_pct: list[float] = field(default_factory=list)

    @property
    def slowest_core_pct(self) -> float | None:
        return min(self.core_speed_pct, default=None)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile_ms(latencies_ns: list[int], fraction: float) -> float:
    if not latencies_ns:
        return float("nan")
    ordered = sorted(latencies_ns)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index] / 1e6


def cpu_ticks() -> tuple[int, int]:
    """(all, steal) jiffies of the machine so far, from the first line of /proc/stat."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return sum(fields), (fields[7] if len(fields) > 7 else 0)


def steal_share_pct(before: tuple[int, int], after: tuple[int, int]) -> float:
    """On a VM, a share of the cores another guest took: the numbers are lower by about it."""
    total = after[0] - before[0]
    return 100.0 * (after[1] - before[1]) / total if total > 0 else 0.0


def family(pid: int) -> list[int]:
    """The process and its children (a supervisor's worker processes)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return [pid, *(int(child) for child in children)]


def peak_rss_mb(pid: int) -> float:
    """The process's high-water resident set (VmHWM), read before it is stopped."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid: int) -> float:
    """User plus system CPU time the process used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


def worker_starter(
    sandbox: SandboxProcess, concurrency: int, processes: int = 1, store_url: str | None = None
) -> StartConsumer:
    """``provisioner run``; with several processes, ``concurrency`` is split between them.
    The store is a fresh SQLite file unless ``store_url`` is given."""

    def start(broker: BenchBroker, workdir: Path) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env.update(
            PROVISIONER_AMQP_URL=AMQP_URL,
            PROVISIONER_API_URL=sandbox.url,
            PROVISIONER_API_USER=sandbox.api_user,
            PROVISIONER_API_KEY=sandbox.api_key,
            PROVISIONER_STORE_URL=store_url or f"sqlite:///{workdir / 'store.db'}",
            PROVISIONER_PREFIX=broker.prefix,
            PROVISIONER_RETRY_DELAYS="30s",
            PROVISIONER_HTTP_PORT="0",
            PROVISIONER_CONCURRENCY=str(max(1, concurrency // processes)),
            PROVISIONER_PROCESSES=str(processes),
            PROVISIONER_LOG_FORMAT="json",
        )
        log = (workdir / "worker.log").open("wb")
        return subprocess.Popen(
            [sys.executable, "-m", "worker", "run"], env=env, stdout=log, stderr=subprocess.STDOUT
        )

    return start


def raw_starter(sandbox: SandboxProcess) -> StartConsumer:
    def start(broker: BenchBroker, workdir: Path) -> subprocess.Popen[bytes]:
        args = [AMQP_URL, broker.prefix, sandbox.url, sandbox.api_user, sandbox.api_key]
        log = (workdir / "raw.log").open("wb")
        return subprocess.Popen(
            [sys.executable, "-m", "bench.raw_loop", *args], stdout=log, stderr=subprocess.STDOUT
        )

    return start


def measure(
    mode: str,
    latency_ms: float,
    concurrency: int,
    commands: int,
    start: StartConsumer,
    processes: int = 1,
    host: HostSpeed | None = None,
) -> RunResult:
    broker = BenchBroker()
    tap = EventTap(broker.tap_queue)
    tap.start_and_wait()
    run_id = broker.prefix.removeprefix("bench")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            burst = [create_customer(run_id, i) for i in range(commands)]
            for command in burst:
                broker.publish(command)
            broker.wait_queued(commands)
            before = host.probe() if host is not None else {}
            ticks_before = cpu_ticks()
            process = start(broker, Path(tmp))
            try:
                wait_until(lambda: tap.count() >= commands, EVENTS_TIMEOUT_S, "the burst's events")
                rate, burst_latencies = _burst_numbers(broker, tap, burst)
                cores = slower_of(before, host.probe()) if host is not None else []
                paced_rate, paced = _paced_phase(broker, tap, run_id, commands, rate)
                pids = family(process.pid)
                peaks = [peak_rss_mb(pid) for pid in pids]
                cpu_total_s = sum(cpu_s(pid) for pid in pids)
                cpu_per_command_ms = cpu_total_s * 1000 / len(tap.received_snapshot())
                steal_pct = steal_share_pct(ticks_before, cpu_ticks())
            finally:
                _stop(process)
                if process.returncode not in (0, -signal.SIGTERM):
                    print(f"  {mode}: exit code {process.returncode}; log in {tmp}")
    finally:
        tap.stop()
        broker.close()
    return RunResult(
        mode, latency_ms, concurrency, commands, rate,
        percentile_ms(burst_latencies, 0.5), percentile_ms(burst_latencies, 0.99),
        paced_rate, len(paced), percentile_ms(paced, 0.5), percentile_ms(paced, 0.99),
        max(peaks), tap.not_succeeded, cpu_per_command_ms, processes, sum(peaks), steal_pct,
        core_speed_pct=cores,
    )  # fmt: skip


def _burst_numbers(
    broker: BenchBroker, tap: EventTap, burst: list[dict[str, Any]]
) -> tuple[float, list[int]]:
    received = tap.received_snapshot()
    times = [received[c["idempotency_key"]] for c in burst]
    span_s = (max(times) - min(times)) / 1e9
    rate = (len(times) - 1) / span_s if span_s > 0 else float("nan")
    latencies = [
        received[k] - broker.published_ns[k] for k in (c["idempotency_key"] for c in burst)
    ]
    return rate, latencies


def _paced_phase(
    broker: BenchBroker, tap: EventTap, run_id: str, offset: int, burst_rate: float
) -> tuple[float, list[int]]:
    rate = max(1.0, burst_rate * PACED_FRACTION)
    count = max(PACED_MIN_COMMANDS, int(rate * PACED_DURATION_S))
    interval_s = 1.0 / rate
    commands = [create_customer(run_id, offset + i) for i in range(count)]
    began = time.monotonic()
    for index, command in enumerate(commands):
        # Open-loop pacing: each publish is due at its slot, whatever the previous one cost.
        delay_s = began + index * interval_s - time.monotonic()
        if delay_s > 0:
            broker.connection.sleep(delay_s)
        broker.publish(command)
    keys = {c["idempotency_key"] for c in commands}
    wait_until(lambda: tap.count(keys) >= count, EVENTS_TIMEOUT_S, "the paced events")
    received = tap.received_snapshot()
    return rate, [received[k] - broker.published_ns[k] for k in keys]


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
