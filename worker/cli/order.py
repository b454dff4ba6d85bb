"""`provisioner order holds|release`: the holds of per-customer order (docs/ordering.md)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from worker.cli.common import add_settings_flags, fail_config, settings_from_args
from worker.config import ConfigError, Settings
from worker.exit_codes import EXIT_BROKER, EXIT_OK, EXIT_PARTIAL
from worker.hold_watch import check_every_s, overdue_after_s
from worker.store import StoreError, open_store
from worker.store.order import Backend
from worker.store.order_upkeep import HoldRow, OrderUpkeep

DESCRIPTION = """`partitions` shows the deployment's P as the store records it, a change of it
under way (docs/ordering.md, "Changing P") and each member's PROVISIONER_PARTITIONS.
Customers held behind a command in a delay tier (its "holder"), with their
later commands parked in the store. `holds` lists them (never a command's body); `release
KEY` lets KEY's parked commands run, in order, without waiting for its holder: for a holder
that will never come back (its delay-tier copy purged or dead-lettered by hand). Should it
come back after all, it runs after the commands it held (or replays its event if it had
finished), with a warning `a released holder came back`."""
EPILOG = """exit codes: 0 listed / released, 2 bad configuration, 3 store unreachable,
  4 release: KEY is not held (no hold, or its parked commands already run)"""
SETTINGS = ("store_url", "retry_delays_s", "hold_overdue_margin_s")

T = TypeVar("T")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "order",
        help="list or release the holds of per-customer order",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    holds = actions.add_parser("holds", help="list the holds, oldest first")
    holds.add_argument("--json", action="store_true", help="one JSON document")
    add_settings_flags(holds, *SETTINGS)
    holds.set_defaults(handler=handle_holds)
    parts = actions.add_parser(
        "partitions",
        help="the deployment's P, a change of it under way, and each process's setting",
    )
    add_settings_flags(parts, "store_url")
    parts.set_defaults(handler=handle_partitions)
    release = actions.add_parser("release", help="let a held customer's parked commands run")
    release.add_argument("key", metavar="KEY", help="the ordering key (see `order holds`)")
    add_settings_flags(release, *SETTINGS)
    release.set_defaults(handler=handle_release)


def _upkeep(settings: Settings) -> OrderUpkeep:
    return OrderUpkeep(cast(Backend, open_store(settings.store_url, pool_size=1)))


def _close(upkeep: OrderUpkeep) -> None:
    upkeep._backend.close()  # type: ignore[attr-defined]


def _store_failure(exc: StoreError) -> int:
    print(f"provisioner: store unreachable: {exc}", file=sys.stderr)
    return EXIT_BROKER


def _ask_store(
    args: argparse.Namespace, ask: Callable[[OrderUpkeep], T]
) -> tuple[Settings, T] | int:
    """The settings and what ``ask`` got from the store, or the exit code once the
    configuration or the store failed (said on stderr)."""
    try:
        settings = settings_from_args(args)
    except ConfigError as exc:
        return fail_config(exc)
    try:
        upkeep = _upkeep(settings)
        try:
            return settings, ask(upkeep)
        finally:
            _close(upkeep)
    except StoreError as exc:
        return _store_failure(exc)


def handle_holds(args: argparse.Namespace) -> int:
    answer = _ask_store(args, lambda upkeep: upkeep.holds())
    if isinstance(answer, int):
        return answer
    settings, rows = answer
    overdue_s = overdue_after_s(settings.retry_delays_s, settings.hold_overdue_margin_s)
    listed = [_listed(row, time.time(), overdue_s) for row in rows]
    if args.json:
        print(json.dumps({"overdue_after_s": overdue_s, "holds": listed}, indent=2))
        return EXIT_OK
    print(f"{'ORDER KEY':32} {'HOLDER':32} {'PART':>4} {'AGE':>9} {'PARKED':>6}  STATE")
    for hold in listed:
        holder = hold["holder"] or "-"
        age = f"{hold['age_s']:.0f}s"
        print(
            f"{hold['order_key']:32} {holder:32} {hold['partition']:>4} {age:>9} "
            f"{hold['parked']:>6}  {hold['state']}"
        )
    print(f"{len(listed)} hold(s); overdue after {overdue_s:g} s", file=sys.stderr)
    return EXIT_OK


def _listed(row: HoldRow, now: float, overdue_s: float) -> dict[str, Any]:
    age = max(0.0, now - row.updated_at)
    state = "draining" if row.holder is None else "overdue" if age > overdue_s else "held"
    return {
        "order_key": row.order_key,
        "holder": row.holder,
        "partition": row.partition,
        "age_s": round(age, 1),
        "parked": row.parked,
        "state": state,
    }


def handle_release(args: argparse.Namespace) -> int:
    answer = _ask_store(args, lambda upkeep: upkeep.release(args.key))
    if isinstance(answer, int):
        return answer
    settings, holder = answer
    if holder is None:
        print(f"{args.key} is not held (no hold, or its parked commands already run)")
        return EXIT_PARTIAL
    within = check_every_s(settings.hold_overdue_margin_s)
    print(
        f"released {args.key} from {holder}: its parked commands run in order once the "
        f"owner of its partition sees it (within {within:g} s)"
    )
    return EXIT_OK


def handle_partitions(args: argparse.Namespace) -> int:
    answer = _ask_store(args, lambda upkeep: upkeep.partitioning())
    if isinstance(answer, int):
        return answer
    _settings, (partitions, switch, members) = answer
    print(f"partitions: {partitions or 'not recorded yet'}")
    print(f"change under way: {switch or 'none'}")
    for owner, configured in members.items():
        print(f"member {owner}: PROVISIONER_PARTITIONS={configured if configured else '?'}")
    return EXIT_OK
