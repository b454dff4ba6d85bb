"""``provisioner``: one console script, one module per subcommand.

Each module in ``SUBCOMMANDS`` exposes ``register(subparsers)`` that adds its parser and
sets ``handler`` (a function ``(args) -> int`` returning the exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from worker import __version__
from worker.exit_codes import EXIT_INTERRUPTED

SUBCOMMANDS = ("run", "publish", "dlq", "schema", "topology", "order")

EXIT_CODES = """exit codes:
  0  success
  1  unexpected error (a bug: see the log and Sentry)
  2  bad usage or bad configuration (the message names the setting)
  3  broker (or, for order, store) unreachable or refused the credentials
  4  the operation ran but some messages failed (see its summary)
  130  interrupted (Ctrl-C)"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="provisioner",
        description="Provisioning worker: consumes commands from RabbitMQ, executes them "
        "against the SendGrid reseller API, publishes one result event per command.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"provisioner {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"worker.cli.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code


if __name__ == "__main__":
    sys.exit(main())
