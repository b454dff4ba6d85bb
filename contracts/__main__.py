"""``python -m contracts schema [--check] [--print] [--out DIR]``: needs only msgspec."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from contracts.schema import SCHEMA_DIR, build_schemas, stale_schema_files, write_schemas

EXIT_OK = 0
EXIT_STALE = 1


def add_schema_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 when the files in the directory are missing or stale",
    )
    parser.add_argument(
        "--print", dest="print_", action="store_true", help="print the schemas to stdout"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=SCHEMA_DIR,
        metavar="DIR",
        help=f"directory of the schema files (default: {SCHEMA_DIR})",
    )


def run_schema(check: bool, print_: bool, out: Path) -> int:
    """Check, print or write the JSON Schemas; returns the exit code."""
    if check:
        stale = stale_schema_files(out)
        for name in stale:
            print(f"stale: {out / name} (regenerate with `provisioner schema`)", file=sys.stderr)
        if not stale:
            print(f"schemas in {out} are up to date")
        return EXIT_STALE if stale else EXIT_OK
    if print_:
        for text in build_schemas().values():
            sys.stdout.write(text)
        return EXIT_OK
    for path in write_schemas(out):
        print(f"wrote {path}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m contracts", description="Tools of the provisioning wire contracts."
    )
    sub = parser.add_subparsers(dest="tool", metavar="TOOL", required=True)
    schema = sub.add_parser("schema", help="write (or check) the JSON Schema of every message")
    add_schema_arguments(schema)
    args = parser.parse_args(argv)
    return run_schema(args.check, args.print_, args.out)


if __name__ == "__main__":
    sys.exit(main())
