"""`provisioner dlq groups|list|show|replay|purge`: the dead-letter queue, for operators."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from worker.broker.topology import Topology
from worker.cli.common import add_settings_flags, fail_config, settings_from_args
from worker.config import ConfigError
from worker.exit_codes import EXIT_BROKER, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE
from worker.observability import tracing
from worker.ops import BROKER_ERRORS, broker_failure, operator_connection
from worker.ops.dlq import (
    READ_PROGRESS_EVERY_MESSAGES,
    ProgressReporter,
    detail,
    find,
    may_be,
    render_detail,
    render_json,
    render_table,
)
from worker.ops.dlq_filter import Filters, parse_since
from worker.ops.dlq_groups import GroupTally, render_groups_json, render_groups_table
from worker.ops.dlq_read import DeadLetter, held_messages
from worker.ops.dlq_replay import purge, replay, select

DESCRIPTION = """Inspect and act on the dead-letter queue (<prefix>.dead-letter).

Start with `groups`: one line per cause (type, reason, code, error with ids and numbers
masked) with a stable id; then `list|replay|purge --group ID` act on that cause alone.
Reading never consumes: messages are held unacked and go back, in order, afterwards.
Bodies are shown with passwords and API keys masked. With no filter, `replay` takes
every message without asking; `purge` always asks (y/N) unless --yes."""
EXIT_HELP = f"""exit codes: 0 ok, 2 bad usage, {EXIT_BROKER} broker unreachable,
  {EXIT_PARTIAL} some messages failed to replay (see the summary), 1 not found (show)"""
SETTINGS = ("amqp_url", "prefix", "retry_delays_s", "delivery_limit")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "dlq",
        help="list, show, replay or purge dead-lettered commands",
        description=DESCRIPTION,
        epilog=EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="dlq_action", metavar="ACTION", required=True)
    groups_p = actions.add_parser("groups", help="the dead letters grouped by cause, counted")
    groups_p.add_argument("--json", action="store_true", help="one JSON document, for scripts")
    list_p = actions.add_parser("list", help="a table of the dead letters (or --json)")
    _add_filters(list_p)
    list_p.add_argument("--json", action="store_true", help="one JSON document, for scripts")
    show_p = actions.add_parser("show", help="one message in full, secrets masked")
    show_p.add_argument("target", help="position in `dlq list`, idempotency key or message id")
    show_p.add_argument("--json", action="store_true", help="as one JSON document")
    show_p.add_argument(
        "--raw",
        action="store_true",
        help="print the exact body bytes (contains secrets: only to a terminal unless --force)",
    )
    show_p.add_argument("--force", action="store_true", help="allow --raw into a pipe or file")
    replay_p = actions.add_parser("replay", help="move matching messages back to the commands")
    _add_filters(replay_p)
    replay_p.add_argument("--limit", type=int, metavar="N", help="replay at most N messages")
    replay_p.add_argument("--dry-run", action="store_true", help="list what would be replayed")
    purge_p = actions.add_parser("purge", help="delete matching messages (asks first)")
    _add_filters(purge_p)
    purge_p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    for sub in (groups_p, list_p, show_p, replay_p, purge_p):
        add_settings_flags(sub, *SETTINGS)
        sub.set_defaults(handler=handle)


def _add_filters(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("filters (all given must match)")
    group.add_argument("--group", dest="f_group", metavar="ID", help="a group id from `dlq groups`")
    group.add_argument("--type", dest="f_type", metavar="TYPE", help="command type")
    group.add_argument("--reason", dest="f_reason", metavar="REASON", help="dead-letter reason")
    group.add_argument(
        "--code", dest="f_code", metavar="CODE", help="error code, e.g. retries_exhausted"
    )
    group.add_argument("--key", dest="f_key", metavar="KEY", help="idempotency key")
    group.add_argument("--customer", dest="f_customer", metavar="USER", help="customer username")
    group.add_argument(
        "--since", dest="f_since", metavar="WHEN", help="last failure at or after: ISO time or 2h"
    )


def _filters(args: argparse.Namespace) -> Filters:
    since = getattr(args, "f_since", None)
    return Filters(
        command_type=getattr(args, "f_type", None),
        reason=getattr(args, "f_reason", None),
        error_code=getattr(args, "f_code", None),
        idempotency_key=getattr(args, "f_key", None),
        customer=getattr(args, "f_customer", None),
        since=parse_since(since) if since else None,
        group=getattr(args, "f_group", None),
    )


def handle(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_args(args)
        filters = _filters(args)
    except ConfigError as exc:
        return fail_config(exc)
    except ValueError as exc:
        print(f"provisioner dlq: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if getattr(args, "limit", None) is not None and args.limit < 1:
        print("provisioner dlq: --limit must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    topology = Topology.from_settings(settings)
    try:
        with (
            tracing.session(tracing.SERVICE_NAME),
            operator_connection(settings, f"dlq {args.dlq_action}") as connection,
        ):
            action = ACTIONS[args.dlq_action]
            return action(args, connection, topology, filters)
    except BROKER_ERRORS as exc:
        return broker_failure(exc, settings)


def _reading() -> ProgressReporter:
    return ProgressReporter(sys.stderr, "reading", every=READ_PROGRESS_EVERY_MESSAGES)


def _groups(args: argparse.Namespace, connection: Any, topology: Topology, _: Filters) -> int:
    queue = topology.dead_letter_queue
    tally = GroupTally()
    with held_messages(connection, queue, keep=tally.add, progress=_reading()):
        pass
    if args.json:
        print(render_groups_json(queue, tally))
    else:
        print(render_groups_table(tally))
        print(f"{len(tally.groups())} group(s) of {tally.total} message(s) in {queue}")
    return EXIT_OK


def _list(args: argparse.Namespace, connection: Any, topology: Topology, filters: Filters) -> int:
    queue = topology.dead_letter_queue
    with held_messages(connection, queue, keep=filters.matches, progress=_reading()) as held:
        chosen = held.messages
        if args.json:
            print(render_json(queue, chosen, held.read))
        else:
            print(render_table(chosen))
            print(f"{len(chosen)} of {held.read} message(s) in {queue}")
    return EXIT_OK


def _show(args: argparse.Namespace, connection: Any, topology: Topology, _: Filters) -> int:
    queue = topology.dead_letter_queue
    with held_messages(connection, queue, keep=may_be(args.target), progress=_reading()) as held:
        message = find(held.messages, args.target)
        if message is None:
            print(f"provisioner dlq: no dead letter matches {args.target!r}", file=sys.stderr)
            return 1
        if args.raw:
            return _show_raw(message, force=args.force)
        print(json.dumps(detail(message), indent=2) if args.json else render_detail(message))
    return EXIT_OK


def _show_raw(message: DeadLetter, *, force: bool) -> int:
    print("provisioner dlq: warning: the raw body contains secrets", file=sys.stderr)
    if not (sys.stdout.isatty() or force):
        print("provisioner dlq: not a terminal; add --force to write it anyway", file=sys.stderr)
        return EXIT_USAGE
    sys.stdout.flush()
    sys.stdout.buffer.write(message.body)
    sys.stdout.buffer.flush()
    return EXIT_OK


def _replay(args: argparse.Namespace, connection: Any, topology: Topology, filters: Filters) -> int:
    queue = topology.dead_letter_queue
    if args.dry_run:
        with held_messages(connection, queue, keep=filters.matches, progress=_reading()) as held:
            chosen = select(held.messages, filters, args.limit)
            print(render_table(chosen))
            print(f"dry run: would replay {len(chosen)} of {held.read} message(s)")
        return EXIT_OK
    progress = ProgressReporter(sys.stderr, "replaying")
    summary = replay(
        connection, topology, filters, limit=args.limit, progress=progress, read_progress=_reading()
    )
    for message, reason in summary.failed:
        print(f"failed: {message.idempotency_key or message.message_id}: {reason}", file=sys.stderr)
    print(
        f"replayed {len(summary.replayed)}, skipped {summary.skipped}, "
        f"failed {len(summary.failed)} (to {topology.commands_exchange})"
    )
    return EXIT_PARTIAL if summary.failed else EXIT_OK


def _confirm(filters: Filters, queue: str) -> Any:
    def ask(chosen: list[DeadLetter]) -> bool:
        scope = "EVERY message" if filters.empty else "the matching messages"
        print(f"Remove {scope} ({len(chosen)}) from {queue}? [y/N] ", end="", file=sys.stderr)
        sys.stderr.flush()
        answer = sys.stdin.readline().strip().lower()
        return answer in ("y", "yes")

    return ask


def _purge(args: argparse.Namespace, connection: Any, topology: Topology, filters: Filters) -> int:
    queue = topology.dead_letter_queue
    confirm = (lambda _: True) if args.yes else _confirm(filters, queue)
    removed = purge(connection, topology, filters, confirm=confirm)
    if removed is None:
        print("nothing removed")
        return EXIT_OK
    for message in removed:
        key, kind = message.idempotency_key or "-", message.command_type or "-"
        print(f"removed {key} {kind} {message.reason}")
    print(f"removed {len(removed)} message(s) from {queue}")
    return EXIT_OK


ACTIONS = {"groups": _groups, "list": _list, "show": _show, "replay": _replay, "purge": _purge}
