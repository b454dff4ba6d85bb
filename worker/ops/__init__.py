"""Operator tools over the broker: reading, replaying and purging dead letters; publishing.

``operator_connection`` and ``broker_failure`` give every tool the same behaviour when the
broker is away: one line naming it (password masked) and exit code 3, no traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pika.exceptions import AMQPConnectionError, ChannelClosedByBroker

from worker.broker.addresses import passwords, redact_urls
from worker.broker.connection import BrokerAuthFailed, BrokerUnreachable, connect
from worker.config import Settings
from worker.observability.redact import redact_text, register_secret

OPERATOR_CONNECT_ATTEMPTS = 1  # the URL's connection_attempts still applies
OPERATOR_MAX_BACKOFF_S = 2.0
BROKER_ERRORS = (AMQPConnectionError, ChannelClosedByBroker)


@contextmanager
def operator_connection(settings: Settings, tool: str) -> Iterator[Any]:
    """A blocking connection for one operator command, closed on leaving."""
    for secret in (settings.api_key, *passwords(settings.amqp_url)):
        if secret:
            register_secret(secret)
    connection = connect(
        settings.amqp_url,
        attempts=OPERATOR_CONNECT_ATTEMPTS,
        max_backoff_s=OPERATOR_MAX_BACKOFF_S,
        connection_name=f"provisioner {tool}",
    )
    try:
        yield connection
    finally:
        if connection.is_open:
            connection.close()


def broker_failure(exc: BaseException, settings: Settings) -> int:
    """Print one line about the broker problem; returns the broker exit code (3)."""
    if isinstance(exc, ChannelClosedByBroker):
        detail = (
            f"broker refused: {exc.reply_text} (is the topology declared? provisioner topology)"
        )
    elif isinstance(exc, BrokerUnreachable | BrokerAuthFailed):
        detail = str(exc)  # names the broker, password already masked
    else:
        detail = f"broker {redact_urls(settings.amqp_url)} unreachable ({type(exc).__name__})"
    print(f"provisioner: {redact_text(detail)}", file=sys.stderr)
    return 3
