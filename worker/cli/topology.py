"""`provisioner topology [--check]`: declare the exchanges and queues, or verify them."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from worker.broker.replication import ManagementApi, ReplicationUnknownError, under_replicated
from worker.broker.topology import Topology
from worker.cli.common import add_settings_flags, fail_config, settings_from_args
from worker.config import ConfigError, Settings
from worker.exit_codes import EXIT_ERROR, EXIT_OK
from worker.ops import BROKER_ERRORS, broker_failure, operator_connection

DESCRIPTION = """Declare the broker topology under the configured prefix (idempotent: what
exists as specified is left alone), or with --check only verify it and print every
exchange or queue that is missing or declared with other arguments, and (asking the
management API) every quorum queue with fewer members than the cluster has nodes."""
EPILOG = """exit codes: 0 declared / everything in place, 1 --check found differences,
  2 bad configuration, 3 broker unreachable, or a declare refused (an existing queue
  with other arguments: delete it or use another prefix)"""
SETTINGS = (
    "amqp_url",
    "prefix",
    "retry_delays_s",
    "delivery_limit",
    "management_url",
    "quorum_group_size",
    "partitions",
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "topology",
        help="declare (or --check) the exchanges and queues",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--check", action="store_true", help="verify only; exit 1 on differences")
    add_settings_flags(parser, *SETTINGS)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_args(args)
    except ConfigError as exc:
        return fail_config(exc)
    topology = Topology.from_settings(settings)
    try:
        with operator_connection(settings, "topology") as connection:
            channel = connection.channel()
            if args.check:
                return _report(topology.check(channel) + _replication(settings, topology))
            for line in topology.declare(channel):
                print(f"declared {line}")
    except BROKER_ERRORS as exc:
        return broker_failure(exc, settings)
    return EXIT_OK


def _replication(settings: Settings, topology: Topology) -> list[str]:
    """Under-replicated queues; a note (not a difference) when the API cannot be asked."""
    api = ManagementApi.from_urls(settings.amqp_url, settings.management_url)
    try:
        return under_replicated(api, [queue.name for queue in topology.queues()])
    except ReplicationUnknownError as exc:
        print(f"replication not checked: {exc}", file=sys.stderr)
        return []


def _report(problems: list[str]) -> int:
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} difference(s)", file=sys.stderr)
        return EXIT_ERROR
    print("topology in place")
    return EXIT_OK
