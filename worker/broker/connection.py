"""Opening a blocking connection to the broker, with capped jittered backoff.

``pika.URLParameters`` reads the URL's query parameters (``heartbeat``,
``connection_attempts``, ``socket_timeout``, ...), so operators tune them in
``PROVISIONER_AMQP_URL``. Several comma-separated URLs are the nodes of one cluster, tried
in turn (``worker/broker/addresses.py``). Errors never show the password: their text uses
``redact_url``.
"""

from __future__ import annotations

import logging
import random
import time

import pika
from pika.exceptions import AMQPConnectionError, AuthenticationError, ProbableAuthenticationError

from worker.broker.addresses import BrokerAddresses, redact_url

log = logging.getLogger(__name__)

BACKOFF_BASE_S = 0.5


class BrokerUnreachable(AMQPConnectionError):  # type: ignore[misc]  # noqa: N818 - documented name
    """Every attempt to connect failed; ``str()`` names the broker without its password."""


class BrokerAuthFailed(AMQPConnectionError):  # type: ignore[misc]  # noqa: N818 - documented name
    """The broker refused the credentials; retrying with the same ones cannot help."""


def backoff_s(failures: int, max_backoff_s: float) -> float:
    """Full jitter over an exponential ceiling, capped at ``max_backoff_s``."""
    ceiling = min(max_backoff_s, BACKOFF_BASE_S * 2 ** max(0, failures - 1))
    return random.uniform(0, ceiling)  # jitter, not cryptography


def connect(
    amqp_url: str | BrokerAddresses,
    *,
    attempts: int = 1,
    max_backoff_s: float = 30.0,
    connection_name: str = "provisioner",
    blocked_timeout_s: float | None = None,
) -> pika.BlockingConnection:
    """Connect, trying up to ``attempts`` times; each attempt tries every node of the list,
    from the one due next (a ``BrokerAddresses`` kept by the caller remembers it between
    calls; a plain string starts at a random node).

    ``blocked_timeout_s``: how long the broker may block the connection (a memory or disk
    alarm) before pika drops it, so that no publish waits forever (``ConnectionBlockedTimeout``
    from ``process_data_events``); a ``blocked_connection_timeout`` in the URL wins.

    Raises ``BrokerAuthFailed`` at once for refused credentials, ``BrokerUnreachable`` when
    every attempt failed. Both are ``AMQPConnectionError`` so reconnect loops catch them.
    """
    addresses = (
        amqp_url if isinstance(amqp_url, BrokerAddresses) else BrokerAddresses.parse(amqp_url)
    )
    last_error = "no attempt made"
    for attempt in range(1, max(1, attempts) + 1):
        connection, last_error = _try_every_node(addresses, connection_name, blocked_timeout_s)
        if connection is not None:
            return connection
        if attempt < attempts:
            delay_s = backoff_s(attempt, max_backoff_s)
            fields = {"broker": addresses.describe(), "attempt": attempt, "delay_s": delay_s}
            log.warning("broker unreachable, retrying", extra={"fields": fields})
            time.sleep(delay_s)
    raise BrokerUnreachable(
        f"broker {addresses.describe()} unreachable after {max(1, attempts)} attempt(s)"
        f" ({last_error})"
    )


def _try_every_node(
    addresses: BrokerAddresses, connection_name: str, blocked_timeout_s: float | None
) -> tuple[pika.BlockingConnection | None, str]:
    """One attempt: each node in turn, from the one due next; the connection, or None and
    the last node's error."""
    last_error = "no node to try"
    for url in addresses.rotation():
        try:
            connection = _open(url, connection_name, blocked_timeout_s)
        except BrokerAuthFailed:
            raise
        except (AMQPConnectionError, OSError) as exc:  # OSError: DNS failures and the like
            last_error = type(exc).__name__
            _log_failover(url, last_error, addresses)
            continue
        addresses.connected(url)
        return connection, last_error
    return None, last_error


def _open(
    url: str, connection_name: str, blocked_timeout_s: float | None
) -> pika.BlockingConnection:
    parameters = pika.URLParameters(url)
    parameters.client_properties = {"connection_name": connection_name}
    if blocked_timeout_s is not None and "blocked_connection_timeout" not in url:
        parameters.blocked_connection_timeout = blocked_timeout_s
    try:
        return pika.BlockingConnection(parameters)
    except (ProbableAuthenticationError, AuthenticationError):
        # The nodes of one cluster share their users: another node would refuse them too.
        raise BrokerAuthFailed(f"broker {redact_url(url)} refused the credentials") from None


def _log_failover(url: str, error: str, addresses: BrokerAddresses) -> None:
    if len(addresses) > 1:
        log.warning(
            "broker node unreachable, trying the next",
            extra={"fields": {"broker": redact_url(url), "error": error}},
        )
