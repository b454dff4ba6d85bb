"""One worker process: its logging, and its failures mapped to the documented exit codes.

``provisioner run`` calls it directly, the supervisor once in each child it spawns.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from worker.config import Settings
from worker.exit_codes import EXIT_BROKER, EXIT_USAGE


def setup_logging(settings: Settings) -> None:
    from worker.observability.logs import configure_logging

    configure_logging(settings.log_format, settings.log_level)
    if settings.log_level.upper() != "DEBUG":
        # pika logs each failed connection attempt as an ERROR with a traceback; the worker
        # reports connection trouble itself, in one line each, so keep pika for debugging.
        logging.getLogger("pika").setLevel(logging.CRITICAL)


def run_one_process(settings: Settings, **options: Any) -> int:
    """One worker process, its failures mapped to the documented exit codes."""
    from worker.app import run_worker
    from worker.broker.connection import BrokerAuthFailed, BrokerUnreachable
    from worker.store import StoreError

    setup_logging(settings)
    try:
        return run_worker(settings, **options)
    except (BrokerUnreachable, BrokerAuthFailed) as exc:
        print(f"provisioner: broker: {exc}", file=sys.stderr)
        return EXIT_BROKER
    except StoreError as exc:
        print(f"provisioner: configuration error: PROVISIONER_STORE_URL: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        logging.shutdown()
