"""Opening a blocking connection to the broker, with capped jittered backoff.

``pika.URLParameters`` reads the URL's query parameters (``heartbeat``,
``connection_attempts``, ``socket_timeout``, ...), so operators tune them in
``PROVISIONER_AMQP_URL``. Errors never show the password: their text uses ``redact_url``.
"""

from __future__ import annotations

import logging
import random
import time
from urllib.parse import urlsplit, urlunsplit

import pika
from pika.exceptions import AMQPConnectionError, AuthenticationError, ProbableAuthenticationError

log = logging.getLogger(__name__)

BACKOFF_BASE_S = 0.5
REDACTED = "***"


class BrokerUnreachable(AMQPConnectionError):  # type: ignore[misc]  # noqa: N818 - documented name
    """Every attempt to connect failed; ``str()`` names the broker without its password."""


class BrokerAuthFailed(AMQPConnectionError):  # type: ignore[misc]  # noqa: N818 - documented name
    """The broker refused the credentials; retrying with the same ones cannot help."""


def redact_url(url: str) -> str:
    """``amqp://guest:secret@host:5672/%2F`` -> ``amqp://guest:***@host:5672/%2F``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable broker URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{REDACTED}@{host}"))


def backoff_s(failures: int, max_backoff_s: float) -> float:
    """Full jitter over an exponential ceiling, capped at ``max_backoff_s``."""
    ceiling = min(max_backoff_s, BACKOFF_BASE_S * 2 ** max(0, failures - 1))
    return random.uniform(0, ceiling)  # jitter, not cryptography


def connect(
    amqp_url: str,
    *,
    attempts: int = 1,
    max_backoff_s: float = 30.0,
    connection_name: str = "provisioner",
    blocked_timeout_s: float | None = None,
) -> pika.BlockingConnection:
    """Connect, trying up to ``attempts`` times.

    ``blocked_timeout_s``: how long the broker may block the connection (a memory or disk
    alarm) before pika drops it, so that no publish waits forever (``ConnectionBlockedTimeout``
    from ``process_data_events``); a ``blocked_connection_timeout`` in the URL wins.

    Raises ``BrokerAuthFailed`` at once for refused credentials, ``BrokerUnreachable`` when
    every attempt failed. Both are ``AMQPConnectionError`` so reconnect loops catch them.
    """
    parameters = pika.URLParameters(amqp_url)
    parameters.client_properties = {"connection_name": connection_name}
    if blocked_timeout_s is not None and "blocked_connection_timeout" not in amqp_url:
        parameters.blocked_connection_timeout = blocked_timeout_s
    shown = redact_url(amqp_url)
    last_error = "no attempt made"
    for attempt in range(1, max(1, attempts) + 1):
        try:
            return pika.BlockingConnection(parameters)
        except (ProbableAuthenticationError, AuthenticationError):
            raise BrokerAuthFailed(f"broker {shown} refused the credentials") from None
        except AMQPConnectionError as exc:
            last_error = type(exc).__name__
        except OSError as exc:  # DNS failures and the like, before pika's own handling
            last_error = type(exc).__name__
        if attempt < attempts:
            delay_s = backoff_s(attempt, max_backoff_s)
            log.warning(
                "broker unreachable, retrying",
                extra={"fields": {"broker": shown, "attempt": attempt, "delay_s": delay_s}},
            )
            time.sleep(delay_s)
    raise BrokerUnreachable(
        f"broker {shown} unreachable after {max(1, attempts)} attempt(s) ({last_error})"
    )
