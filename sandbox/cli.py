"""`provisioner-sandbox` (or `python -m sandbox`): a local reseller API with state and fault
injection."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from sandbox import DEFAULT_API_KEY, DEFAULT_API_USER, DEFAULT_HOST, DEFAULT_PORT
from sandbox.faults import DEFAULT_HANG_S, DEFAULT_RETRY_AFTER_S, FaultSettings

DESCRIPTION = """\
Serve a local stand-in for the SendGrid reseller API: every documented call with state,
under both namings (<url>/apiv2/reseller.<call>.json and <url>/api/distributor.<call>.json),
plus a JSON control endpoint under /_sandbox/ (faults, calls, log, state, reset) to change
the faults at runtime. Prints one line with its URLs when ready; SIGTERM/SIGINT stop it."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="provisioner-sandbox",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (%(default)s)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port (%(default)s; 0 picks a free one)"
    )
    parser.add_argument(
        "--api-user", default=DEFAULT_API_USER, help="accepted api_user (%(default)s)"
    )
    parser.add_argument("--api-key", default=DEFAULT_API_KEY, help="accepted api_key")
    parser.add_argument(
        "--state-file",
        metavar="PATH",
        help="SQLite file keeping the state across restarts (default: in memory)",
    )
    add_fault_flags(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return handle(args)
    except KeyboardInterrupt:
        return 130


# Per call, the probability (0..1) of each fault: its flag, and what happens.
FAULT_RATES = (
    ("--error-rate", "a 503"),
    ("--rate-429", "a 429"),
    ("--hang-rate", "applying a call, then answering only after --hang-s"),
    ("--reset-rate", "applying a call, then closing the connection unanswered"),
    ("--applied-error-rate", "applying a call, then answering --error-status (e.g. 502)"),
    ("--applied-garbled-rate", "applying a call, then answering 200 with a body not JSON"),
)


def add_fault_flags(parser: argparse.ArgumentParser) -> None:
    faults = parser.add_argument_group(
        "fault injection (also settable at runtime: POST /_sandbox/faults)"
    )
    faults.add_argument(
        "--latency-ms", type=float, default=0.0, help="answer each call this long after it arrived"
    )
    for flag, what in FAULT_RATES:
        faults.add_argument(flag, type=float, default=0.0, help=f"probability 0..1 of {what}")
    faults.add_argument(
        "--retry-after-s",
        type=float,
        default=DEFAULT_RETRY_AFTER_S,
        help="Retry-After of a 429 (%(default)s)",
    )
    faults.add_argument(
        "--error-status", type=int, default=503, help="status of injected 5xx (%(default)s)"
    )
    faults.add_argument(
        "--hang-s", type=float, default=DEFAULT_HANG_S, help="delay of a hang (%(default)s)"
    )
    faults.add_argument("--seed", type=int, help="seed of the fault RNG (replayable runs)")


def fault_settings(args: argparse.Namespace) -> FaultSettings:
    return FaultSettings(
        latency_ms=args.latency_ms,
        error_rate=args.error_rate,
        rate_429=args.rate_429,
        retry_after_s=args.retry_after_s,
        hang_rate=args.hang_rate,
        reset_rate=args.reset_rate,
        applied_error_rate=args.applied_error_rate,
        applied_garbled_rate=args.applied_garbled_rate,
        error_status=args.error_status,
        hang_s=args.hang_s,
        seed=args.seed,
    )


def ignore_signal(signum: int, frame: FrameType | None) -> None:
    """Placeholder disposition: the signals are blocked and collected by ``sigwait``."""


def handle(args: argparse.Namespace) -> int:
    from sandbox.faults import FaultSettingsError
    from sandbox.server import SandboxServer

    try:
        server = SandboxServer(
            host=args.host,
            port=args.port,
            api_user=args.api_user,
            api_key=args.api_key,
            state_file=args.state_file,
            faults=fault_settings(args),
        )
    except FaultSettingsError as exc:
        print(f"provisioner-sandbox: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(
            f"provisioner-sandbox: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr
        )
        return 2
    # sigwait instead of a handler that sets an Event: a second signal arriving while the
    # first handler holds the Event's lock would deadlock the main thread.
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    for signum in stop_signals:
        signal.signal(signum, ignore_signal)  # an inherited SIG_IGN would discard them
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)  # serving threads inherit it
    server.start()
    print(
        f"sandbox ready: apiv2 {server.url} distributor {server.distributor_url} "
        f"control {server.control_url}",
        flush=True,
    )
    signal.sigwait(stop_signals)
    server.stop()
    return 0
