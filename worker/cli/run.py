"""``provisioner run``: the worker."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from worker.cli.common import add_settings_flags, fail_config, settings_from_args
from worker.config import ConfigError, Settings, env_name
from worker.process import run_one_process, setup_logging

DESCRIPTION = """Consume commands from RabbitMQ, execute them against the reseller API and
publish one result event per command. Every setting comes from the environment
(PROVISIONER_*, secrets also as PROVISIONER_*_FILE) or the flags below; flags win.
SIGTERM stops taking messages, finishes or returns the in-flight ones, and exits 0.
With --processes N, a supervisor runs N worker processes (each with --concurrency
API requests in flight) and serves their merged /metrics, /healthz and /readyz on --http-port."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the worker",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_settings_flags(parser)
    parser.set_defaults(handler=handle)


def require_api_credentials(settings: Settings) -> Settings:
    """The worker cannot do anything without them; say so before touching the broker."""
    for name in ("api_user", "api_key"):
        if not getattr(settings, name):
            variable = env_name(name)
            raise ConfigError(variable, f"required (or {variable}_FILE)")
    return settings


def handle(args: argparse.Namespace) -> int:
    try:
        settings = require_api_credentials(settings_from_args(args))
    except ConfigError as exc:
        return fail_config(exc)
    if settings.processes > 1:
        from worker.supervisor import Supervisor

        setup_logging(settings)
        try:
            return Supervisor(settings).run()
        finally:
            logging.shutdown()
    return run_one_process(settings)
