"""`make soak`: the fault-injection soak, checking the delivery guarantees end to end.

    python -m bench.soak [--commands 20000] [--customers 2000] [--kills 3]
                         [--broker-restarts 1] [--seed N] [--postgres]

A mixed workload runs through a real ``provisioner run`` against a ``provisioner-sandbox``
injecting 5xx, 429 and apply-then-hang faults, while the worker is killed with SIGKILL and
the broker restarted. Then it checks (PASS/FAIL, exit 1 on any FAIL): one terminal event
per key, every effect at most once, nothing stuck, every failure dead-lettered with its
reason, each customer's commands ending in publish order, and that replaying the
dead-letter queue without faults brings every key to success.
``run_soak`` is the library entry point the reduced test in ``make test`` uses.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from bench import soak_checks as checks
from bench.rig import postgres_store
from bench.soak_config import (
    DELIVERY_LIMIT,
    DISRUPTION_TIMEOUT_S,
    PUBLISH_CHUNK_COMMANDS,
    RETRY_DELAYS_S,
    SoakConfig,
    SoakResult,
    disruption_plan,
    worker_env,
)
from bench.soak_rig import Broker, EventTap, SandboxProcess, Workers
from bench.soak_workload import check_valid, generate
from sandbox.rigs import WaitTimeoutError, wait_until
from worker.broker import headers as h
from worker.ops.dlq_read import held_messages

__all__ = ["SoakConfig", "SoakResult", "main", "run_soak"]

SANDBOX_CONTROL_TIMEOUT_S = 30.0  # a loaded machine, a broker restarting beside it


class Soak:
    def __init__(self, config: SoakConfig, work: Path, say: Any = print) -> None:
        self.config, self.work, self.say = config, work, say
        self.prefix = f"soak{uuid.uuid4().hex[:8]}"
        self.workload = generate(config.commands, config.customers, config.seed, self.prefix)
        check_valid(self.workload)
        self.keys = [c["idempotency_key"] for c in self.workload]
        self.result = SoakResult()
        self.disruptions: Counter[str] = Counter()

    def run(self) -> SoakResult:
        started = time.monotonic()
        self.sandbox = SandboxProcess(log_path=self.work / "sandbox.log")
        self.sandbox.control_timeout_s = SANDBOX_CONTROL_TIMEOUT_S
        try:
            self.broker = Broker(self.prefix, RETRY_DELAYS_S, DELIVERY_LIMIT)
            try:
                self._with_broker()
            finally:
                self.broker.delete_everything()
        finally:
            self.sandbox.stop()
        self.result.counts["duration"] = f"{time.monotonic() - started:.1f} s"
        return self.result

    def _with_broker(self) -> None:
        env = worker_env(self.config, self.sandbox, self.prefix, self.work)
        self.workers = Workers(env, self.broker, self.work)
        self.tap = EventTap(self.broker.tap_queue, ack=True)
        self.tap.start()
        try:
            self._faulty_phase()
            self._replay_phase()
        finally:
            self.tap.stop()
            self.workers.stop()

    def _faulty_phase(self) -> None:
        self.sandbox.control_post("faults", self.config.faults())
        self.workers.start()
        self.say(f"publishing {len(self.workload)} commands under {self.prefix} ...")
        plan = disruption_plan(self.config)
        for start in range(0, len(self.workload), PUBLISH_CHUNK_COMMANDS):
            self.broker.publish_all(self.workload[start : start + PUBLISH_CHUNK_COMMANDS])
            while plan and len(self.tap.keys_answered()) >= plan[0][0] * len(self.keys):
                self._disrupt(plan.pop(0)[1])
        for fraction, action in plan:
            self._when_answered(fraction)
            self._disrupt(action)
        settled = self._settle(set(self.keys))
        worker_exit = self.workers.stop()
        events = self.tap.snapshot()
        self.result.checks.append(checks.one_terminal_outcome(self.keys, events))
        depths = {q: self.broker.depth(q) for q in self.broker.work_queues()}
        self.result.checks.append(checks.nothing_stuck(depths, worker_exit if settled else -1))
        self.dead = self._read_dead_letters()
        self.result.checks.append(checks.failures_dead_lettered(events, self.dead))
        self.result.checks.append(checks.order_per_customer(self.workload, events))
        self.faults_injected = self.sandbox.control_get("faults").get("injected", {})
        self.events_before_replay = len(events)
        self.failures = checks.failure_codes(events)

    def _disrupt(self, action: str) -> None:
        self.say(f"  {action} at {len(self.tap.keys_answered())} keys answered")
        if action == "kill":
            self.workers.kill()
            self.workers.start()
        else:
            self.broker.restart()
        self.disruptions[action] += 1

    def _when_answered(self, fraction: float) -> None:
        target = int(fraction * len(self.keys))
        try:
            wait_until(
                lambda: len(self.tap.keys_answered()) >= target,
                DISRUPTION_TIMEOUT_S,
                f"{target} keys answered",
            )
        except WaitTimeoutError as exc:
            self.say(f"  {exc}; disrupting anyway")

    def _settle(self, keys: set[str]) -> bool:
        """Until every key is answered and the work queues are empty (False at the deadline)."""
        self.say("waiting for the worker to settle ...")

        def settled() -> bool:
            answered = keys <= self.tap.keys_answered()
            return answered and all(self.broker.depth(q) == 0 for q in self.broker.work_queues())

        try:
            wait_until(settled, self.config.settle_timeout_s, "every key answered, queues empty")
        except WaitTimeoutError as exc:
            self.say(f"  {exc}")
            return False
        return True

    def _read_dead_letters(self) -> list[dict[str, Any]]:
        """Each dead letter's key and its own ``x-provisioner-reason`` header (held, not taken)."""
        with held_messages(self.broker.connection, self.broker.topology.dead_letter_queue) as held:
            return [
                {"idempotency_key": m.idempotency_key, "reason": m.headers.get(h.REASON)}
                for m in held.messages
            ]

    def _replay_phase(self) -> None:
        self.sandbox.control("DELETE", "faults")
        self.workers.start()
        before = self.events_before_replay
        replayed = self._replay_dead_letters()
        replayed_keys = {str(d["idempotency_key"]) for d in self.dead}

        def replayed_answered() -> bool:
            later = self.tap.snapshot()[before:]
            return replayed_keys <= {e.get("idempotency_key") for e in later}

        try:
            wait_until(replayed_answered, self.config.settle_timeout_s, "replayed keys answered")
        except WaitTimeoutError as exc:
            self.say(f"  {exc}")
        self._settle(set(self.keys))
        self.workers.stop()
        events = self.tap.snapshot()
        dlq_left = self.broker.depth(self.broker.topology.dead_letter_queue)
        self.result.checks.insert(
            1, checks.effects_at_most_once(log := self.sandbox.control_get("log")["log"])
        )
        self.result.checks.append(checks.replay_succeeds(self.keys, events, dlq_left))
        self.result.effects = checks.effects_per_call(log)
        self._keep_evidence(events, log)
        self._count(events, replayed, log)

    def _keep_evidence(self, events: list[dict[str, Any]], log: list[Any]) -> None:
        """Every event and applied mutation next to the logs, to explain a FAIL afterwards."""
        with (self.work / "events.jsonl").open("w") as out:
            out.writelines(json.dumps(event) + "\n" for event in events)
        (self.work / "sandbox-log.json").write_text(json.dumps(log))

    def _replay_dead_letters(self) -> int:
        """``provisioner dlq replay``, exactly as an operator runs it; how many it replayed."""
        env = {**os.environ, **self.workers.env}
        done = subprocess.run(
            [sys.executable, "-m", "worker", "dlq", "replay"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        self.say(f"  dlq replay: {done.stdout.strip()} (exit {done.returncode})")
        words = done.stdout.split()
        return int(words[1].rstrip(",")) if words[:1] == ["replayed"] else -1

    def _count(self, events: list[dict[str, Any]], replayed: int, log: list[Any]) -> None:
        distinct = {e["event_id"]: e for e in events}
        delayed = sum(max(0, int(e.get("attempts", 1)) - 1) for e in distinct.values())
        calls = self.sandbox.control_get("calls")["calls"]
        self.result.counts.update(
            {
                "commands": len(self.keys),
                "customers": self.config.customers,
                "events (distinct / delivered)": f"{len(distinct)} / {len(events)}",
                "API requests": sum(n for k, n in calls.items() if "/" not in k),
                "applied effects": len(log),
                "faults injected": dict(self.faults_injected),
                "delayed retries (in events)": delayed,
                "dead-lettered": len(self.dead),
                "failures before replay": self.failures or "none",
                "replayed": replayed,
                "worker SIGKILLs": self.disruptions["kill"],
                "broker restarts": self.disruptions["broker restart"],
            }
        )


def run_soak(config: SoakConfig, work: Path | None = None, say: Any = print) -> SoakResult:
    if work is None:
        work = Path(tempfile.mkdtemp(prefix="soak-"))
    say(f"soak: {config}; logs in {work}")
    return Soak(config, work, say).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--commands", type=int, default=SoakConfig.commands)
    parser.add_argument("--customers", type=int, default=SoakConfig.customers)
    parser.add_argument("--kills", type=int, default=SoakConfig.kills)
    parser.add_argument("--broker-restarts", type=int, default=SoakConfig.broker_restarts)
    parser.add_argument("--seed", type=int, default=SoakConfig.seed)
    parser.add_argument("--concurrency", type=int, default=SoakConfig.concurrency)
    parser.add_argument("--processes", type=int, default=SoakConfig.processes)
    parser.add_argument(
        "--no-outage",
        dest="outage",
        action="store_false",
        help="without the GetAppSettings outage that fills the dead-letter queue",
    )
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="the store on a fresh schema of the test PostgreSQL instead of a SQLite file",
    )
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        store_url = (
            stack.enter_context(postgres_store(f"soak{uuid.uuid4().hex[:8]}"))
            if args.postgres
            else ""
        )
        return _soak_and_report(args, store_url)


def _soak_and_report(args: argparse.Namespace, store_url: str) -> int:
    config = SoakConfig(
        commands=args.commands,
        customers=args.customers,
        kills=args.kills,
        broker_restarts=args.broker_restarts,
        seed=args.seed,
        concurrency=args.concurrency,
        processes=args.processes,
        outage=args.outage,
        store_url=store_url,
    )
    result = run_soak(config)
    print(result.render())
    print(
        f"measured on: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
