"""Sentry for unexpected exceptions only, never with a secret in the event.

- ``init_sentry(dsn, *, release, environment=None, transport=None) -> bool``: does nothing and
  returns False when ``dsn`` is empty. ``send_default_pii`` stays at its default, False (passing
  it is deprecated in recent SDKs, and ``data_collection`` would disable the event scrubber),
  no local variables (a local
  may hold a customer's password that no pattern can recognise), an ``EventScrubber`` with
  ``DENYLIST`` (Sentry's defaults plus this domain's secret fields), and ``before_send`` /
  ``before_breadcrumb`` that drop business failures and scrub every string of the event with
  ``redact.redact_mapping`` (credentials in URLs, ``password=``/``api_key=`` pairs, registered
  secrets).
- ``message_scope(command_type, idempotency_key, correlation_id, attempt)``: a context manager
  giving each message its own isolation scope, tagged ``command_type`` and with a ``command``
  context; the yielded ``MessageScope.set_outcome(outcome)`` tags the outcome.
- ``capture_unexpected(exc) -> str | None``: report an exception unless it is a business
  failure (``worker.errors.ProvisioningError`` or ``contracts`` ``InvalidCommand``: those are
  outcomes with events and dead-letter entries, not bugs).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sentry_sdk
from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber

from worker.errors import ProvisioningError
from worker.observability import tracing
from worker.observability.redact import redact_mapping

DOMAIN_DENYLIST = [
    "new_password",
    "confirm_password",
    "credential_password",
    "new_credential_password",
    "api_user",
    "amqp_url",
    "amqp_password",
    "store_url",
    "sentry_dsn",
    "proxy_authorization",
]
DENYLIST = [*DEFAULT_DENYLIST, *(k for k in DOMAIN_DENYLIST if k not in DEFAULT_DENYLIST)]
BUSINESS_FAILURE_NAMES = frozenset({"InvalidCommand"})  # contracts' validation error
FLUSH_TIMEOUT_S = 2.0


def is_business_failure(exc: BaseException) -> bool:
    if isinstance(exc, ProvisioningError):
        return True
    return any(cls.__name__ in BUSINESS_FAILURE_NAMES for cls in type(exc).__mro__)


def before_send(event: Any, hint: Any) -> Any:
    exc_info = (hint or {}).get("exc_info")
    if exc_info and exc_info[1] is not None and is_business_failure(exc_info[1]):
        return None
    return with_trace_ids(redact_mapping(event))


def with_trace_ids(event: Any) -> Any:
    """The OpenTelemetry trace and span of the failing command on the event, to find it."""
    ids = tracing.current_ids()
    if ids and isinstance(event, dict):
        tags = event.setdefault("tags", {})
        if isinstance(tags, dict):
            tags.update(ids)
        event.setdefault("contexts", {})["otel"] = dict(ids)
    return event


def before_breadcrumb(crumb: Any, hint: Any) -> Any:
    return redact_mapping(crumb)


def init_sentry(
    dsn: str, *, release: str, environment: str | None = None, transport: Any = None
) -> bool:
    """Start Sentry when a DSN is configured; True when it did."""
    if not dsn:
        return False
    options: dict[str, Any] = {
        "dsn": dsn,
        "release": release,
        "environment": environment,
        "include_local_variables": False,
        "max_request_body_size": "never",
        "event_scrubber": EventScrubber(denylist=DENYLIST, recursive=True),
        "before_send": before_send,
        "before_breadcrumb": before_breadcrumb,
    }
    if transport is not None:
        options["transport"] = transport
    sentry_sdk.init(**options)
    return True


class MessageScope:
    """The Sentry scope of one message; ``set_outcome`` tags how it ended (no scope: Sentry
    is off, nothing to tag)."""

    def __init__(self, scope: Any) -> None:
        self.scope = scope

    def set_outcome(self, outcome: str) -> None:
        if self.scope is not None:
            self.scope.set_tag("outcome", outcome)


@contextmanager
def message_scope(
    command_type: str | None,
    idempotency_key: str | None,
    correlation_id: str | None,
    attempt: int,
) -> Iterator[MessageScope]:
    """Everything captured inside belongs to this message and to no other thread's."""
    if not sentry_sdk.is_initialized():  # nothing is captured: no scope to fork per message
        yield MessageScope(None)
        return
    with sentry_sdk.isolation_scope() as scope:
        scope.set_tag("command_type", command_type or "unknown")
        scope.set_context(
            "command",
            {
                "idempotency_key": idempotency_key,
                "correlation_id": correlation_id,
                "attempt": attempt,
            },
        )
        yield MessageScope(scope)


def capture_unexpected(exc: BaseException) -> str | None:
    """Send ``exc`` to Sentry unless it is a business failure; the event id if sent."""
    if is_business_failure(exc):
        return None
    return sentry_sdk.capture_exception(exc)


def flush() -> None:
    """Give queued events a bounded chance to leave before the process exits."""
    sentry_sdk.flush(timeout=FLUSH_TIMEOUT_S)
