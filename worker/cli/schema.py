"""``provisioner schema``: the JSON Schema of every command and event."""

from __future__ import annotations

import argparse
from typing import Any

from contracts.__main__ import add_schema_arguments, run_schema


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "schema",
        help="write, print or check the JSON Schema of every command and event",
        description="Write the JSON Schemas (commands.schema.json, events.schema.json) into "
        "DIR, print them, or with --check exit 1 when the committed files are stale.",
    )
    add_schema_arguments(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    return run_schema(args.check, args.print_, args.out)
