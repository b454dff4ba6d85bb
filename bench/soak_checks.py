"""The soak's verdicts: each check reads what really happened (events, the sandbox's applied
mutations, queue depths, the dead-letter queue) and returns PASS or FAIL with its evidence.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

FAILURE_EVENTS = ("CommandFailed", "CommandRejected")
SHOWN_EXAMPLES = 5
# Applied mutations that must happen at most once per target. Idempotent calls (enable,
# profile set, app activate/setup, credential edit, password reset) may legitimately be
# repeated after an ambiguous answer; they are counted, not judged.
ONCE_ONLY = {("add", None), ("delete", None), ("credential", "add"), ("credential", "delete")}


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.name}: {self.detail}"


def examples(items: Iterable[Any]) -> str:
    shown = sorted(map(str, items))
    more = f" (+{len(shown) - SHOWN_EXAMPLES} more)" if len(shown) > SHOWN_EXAMPLES else ""
    return ", ".join(shown[:SHOWN_EXAMPLES]) + more


def events_by_key(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        grouped[event.get("idempotency_key", "")].append(event)
    return grouped


def outcome(event: dict[str, Any]) -> str:
    return str(event["_routing_key"]).rsplit(".", 1)[-1]


def one_terminal_outcome(keys: list[str], events: list[dict[str, Any]]) -> Check:
    """1. Every key has exactly one terminal event: repeats share its event_id."""
    grouped = events_by_key(events)
    missing = [k for k in keys if k not in grouped]
    split = [k for k in keys if len({e["event_id"] for e in grouped.get(k, [])}) > 1]
    unknown = set(grouped) - set(keys)
    repeats = sum(len(v) - 1 for v in grouped.values())
    passed = not missing and not split and not unknown
    detail = f"{len(keys) - len(missing)}/{len(keys)} keys answered, {repeats} repeated events"
    if missing:
        detail += f"; no event: {examples(missing)}"
    if split:
        detail += f"; several events: {examples(split)}"
    if unknown:
        detail += f"; events for keys never published: {examples(unknown)}"
    return Check("one terminal event per key", passed, detail)


def mutation_target(entry: dict[str, Any]) -> tuple[Any, ...]:
    call, task = entry.get("call"), entry.get("task")
    user = entry.get("user") or entry.get("username")
    return (call, task, user, entry.get("credential_name"), entry.get("app"))


def effects_at_most_once(log: list[dict[str, Any]]) -> Check:
    """2. No customer created or deleted twice, no credential added or deleted twice."""
    once_only = Counter(
        mutation_target(e) for e in log if (e.get("call"), e.get("task")) in ONCE_ONLY
    )
    doubled = {target: n for target, n in once_only.items() if n > 1}
    detail = f"{sum(once_only.values())} create/delete effects on {len(once_only)} targets"
    if doubled:
        shown = examples(f"{'/'.join(str(p) for p in t if p)} x{n}" for t, n in doubled.items())
        detail += f"; applied twice: {shown}"
    return Check("every effect at most once", not doubled, detail)


def effects_per_call(log: list[dict[str, Any]]) -> dict[str, int]:
    counts = Counter(f"{e.get('call')}/{e.get('task')}" for e in log)
    return dict(sorted(counts.items()))


def nothing_stuck(depths: dict[str, int], worker_exit: int) -> Check:
    """3. The commands queue and every retry tier are empty once the worker has drained."""
    stuck = {queue: n for queue, n in depths.items() if n}
    detail = ", ".join(f"{queue}={n}" for queue, n in depths.items())
    detail += f"; worker drained with exit {worker_exit}"
    return Check("nothing stuck in commands/retry queues", not stuck and worker_exit == 0, detail)


def latest_events(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for event in events:  # arrival order: a later event wins
        latest[event.get("idempotency_key", "")] = event
    return latest


def failures_dead_lettered(events: list[dict[str, Any]], dead: list[dict[str, Any]]) -> Check:
    """4. The keys with a failure event are exactly the keys in the DLQ, each dead letter
    with its ``x-provisioner-reason`` (``dead`` rows: idempotency_key, reason or None)."""
    failed = {str(e.get("idempotency_key")) for e in events if e.get("type") in FAILURE_EVENTS}
    in_dlq = Counter(str(m.get("idempotency_key")) for m in dead)
    no_reason = [m.get("idempotency_key") for m in dead if not m.get("reason")]
    twice = [k for k, n in in_dlq.items() if n > 1]
    missing, extra = failed - set(in_dlq), set(in_dlq) - failed
    reasons = Counter(str(m.get("reason")) for m in dead)
    detail = f"{len(failed)} failed keys, {len(dead)} dead letters " + (
        "(" + ", ".join(f"{r}={n}" for r, n in sorted(reasons.items())) + ")" if dead else ""
    )
    if twice:  # a kill between dead-lettering and the ack: at-least-once, replay absorbs it
        detail += f"; {len(twice)} dead-lettered twice (allowed): {examples(twice)}"
    for label, items in (
        ("failed but not dead-lettered", missing),
        ("dead-lettered without a failure event", extra),
        ("without x-provisioner-reason", no_reason),
    ):
        if items:
            detail += f"; {label}: {examples(items)}"
    passed = not (missing or extra or no_reason)
    return Check("every failure dead-lettered with its reason", passed, detail)


def replay_succeeds(keys: list[str], events: list[dict[str, Any]], dlq_left: int) -> Check:
    """5. After the faults stop and the DLQ is replayed, every key's latest outcome is success."""
    latest = latest_events(events)
    not_ok = [k for k in keys if k not in latest or outcome(latest[k]) != "succeeded"]
    codes = Counter(
        latest[k].get("error", {}).get("code", "no event") if k in latest else "no event"
        for k in not_ok
    )
    detail = f"{len(keys) - len(not_ok)}/{len(keys)} keys succeeded, {dlq_left} left in the DLQ"
    if not_ok:
        detail += f"; not succeeded ({dict(codes)}): {examples(not_ok)}"
    return Check("replay brings every key to success", not not_ok and dlq_left == 0, detail)


def customer_of(command: dict[str, Any]) -> str:
    return str(command.get("customer") or command.get("username") or "")


def order_per_customer(workload: list[dict[str, Any]], events: list[dict[str, Any]]) -> Check:
    """6. Each customer's commands ended in the order they were published: the first
    terminal event of each key, as received, follows the customer's publish order."""
    position = {str(c["idempotency_key"]): i for i, c in enumerate(workload)}
    customers = {str(c["idempotency_key"]): customer_of(c) for c in workload}
    seen: dict[str, list[int]] = defaultdict(list)
    first: set[str] = set()
    for event in events:
        key = str(event.get("idempotency_key", ""))
        if key in position and key not in first:
            first.add(key)
            seen[customers[key]].append(position[key])
    out_of_order = [name for name, order in seen.items() if order != sorted(order)]
    detail = f"{len(seen) - len(out_of_order)}/{len(seen)} customers in publish order"
    if out_of_order:
        detail += f"; out of order: {examples(out_of_order)}"
    return Check("each customer's commands in publish order", not out_of_order, detail)


def failure_codes(events: list[dict[str, Any]]) -> dict[str, int]:
    """``<command type>/<error code>`` of every distinct failure event, for the table."""
    distinct = {e["event_id"]: e for e in events if e.get("type") in FAILURE_EVENTS}
    codes = Counter(
        f"{e.get('command_type')}/{e.get('error', {}).get('code')}" for e in distinct.values()
    )
    return dict(sorted(codes.items()))
