"""`provisioner publish [FILE|-]`: validate a command, publish it, optionally await its event."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pika.exceptions import NackError, UnroutableError

from contracts import InvalidCommand, decode_command
from worker.broker.topology import Topology
from worker.cli.common import add_settings_flags, fail_config, settings_from_args
from worker.config import ConfigError
from worker.exit_codes import EXIT_COMMAND_FAILED, EXIT_OK, EXIT_TIMEOUT, EXIT_USAGE
from worker.observability import tracing
from worker.ops import BROKER_ERRORS, broker_failure, operator_connection
from worker.ops.publish import Published, await_event, is_failure, publish_command

WAIT_TIMEOUT_S = 30.0
DESCRIPTION = """Publish one command (JSON, from FILE or stdin) to <prefix>.commands.

The command is validated first, exactly as the worker will; every problem is printed
and nothing is published. The body goes out as given (with its secrets) and is never
printed; the message id is. With --wait, the result event is awaited on a private
reply queue and printed."""
EPILOG = f"""exit codes:
  0  published (with --wait: the command succeeded)
  1  unexpected error
  2  invalid command, unreadable file or bad configuration
  3  broker unreachable or refused the credentials
  {EXIT_COMMAND_FAILED}  with --wait: the command failed or was rejected; or the broker did not
     accept it (unroutable: run `provisioner topology`)
  {EXIT_TIMEOUT}  with --wait: no event within --timeout"""
SETTINGS = ("amqp_url", "prefix", "retry_delays_s", "delivery_limit")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "publish",
        help="publish a command from JSON (validated first)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", nargs="?", default="-", metavar="FILE|-", help="default: stdin")
    parser.add_argument("--routing-key", metavar="KEY", help="default: the command type")
    parser.add_argument("--correlation-id", metavar="ID", help="default: the message id")
    parser.add_argument("--wait", action="store_true", help="await the result event")
    parser.add_argument(
        "--timeout", type=float, default=WAIT_TIMEOUT_S, metavar="S", help="for --wait (30)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    add_settings_flags(parser, *SETTINGS)
    parser.set_defaults(handler=handle)


def _read_body(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read()
    return Path(source).read_bytes()


def handle(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_args(args)
    except ConfigError as exc:
        return fail_config(exc)
    try:
        body = _read_body(args.file)
    except OSError as exc:
        print(f"provisioner publish: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    try:
        command = decode_command(body)
    except InvalidCommand as exc:
        for problem in exc.problems:
            print(f"{problem.path}: {problem.message}", file=sys.stderr)
        print("provisioner publish: invalid command, nothing published", file=sys.stderr)
        return EXIT_USAGE
    routing_key = args.routing_key or type(command).__name__
    topology = Topology.from_settings(settings)
    try:
        with (
            tracing.session(tracing.SERVICE_NAME),
            operator_connection(settings, "publish") as connection,
        ):
            return _publish(args, connection, topology, body, routing_key)
    except BROKER_ERRORS as exc:
        return broker_failure(exc, settings)


def _publish(
    args: argparse.Namespace, connection: Any, topology: Topology, body: bytes, routing_key: str
) -> int:
    channel = connection.channel()
    try:
        published = publish_command(
            channel,
            topology,
            body,
            routing_key,
            correlation_id=args.correlation_id,
            wait_for_reply=args.wait,
        )
    except (UnroutableError, NackError) as exc:
        reason = "unroutable" if isinstance(exc, UnroutableError) else "refused (nack)"
        print(
            f"provisioner publish: the broker did not accept the command: {reason}", file=sys.stderr
        )
        return EXIT_COMMAND_FAILED
    if not args.wait:
        _print(args, published, None)
        return EXIT_OK
    event = await_event(connection, channel, published, args.timeout)
    _print(args, published, event)
    if event is None:
        print(f"provisioner publish: no event within {args.timeout}s", file=sys.stderr)
        return EXIT_TIMEOUT
    return EXIT_COMMAND_FAILED if is_failure(event) else EXIT_OK


def _print(args: argparse.Namespace, published: Published, event: bytes | None) -> None:
    decoded = _event_json(event)
    if args.json:
        document = {
            "message_id": published.message_id,
            "correlation_id": published.correlation_id,
            "routing_key": published.routing_key,
            "event": decoded,
        }
        print(json.dumps(document, indent=2))
        return
    print(published.message_id)
    if decoded is not None:
        print(json.dumps(decoded, indent=2))


def _event_json(event: bytes | None) -> Any:
    if event is None:
        return None
    try:
        return json.loads(event)
    except ValueError:
        return {"unparseable_event": event[:200].decode("utf-8", "replace")}
