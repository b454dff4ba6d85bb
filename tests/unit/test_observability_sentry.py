"""What Sentry would send, captured by a custom transport: never a secret or business failure."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from contracts.codec import InvalidCommand
from contracts.events import ErrorCode
from worker.errors import PermanentError, TransientError
from worker.observability.redact import clear_registered_secrets, register_secret
from worker.observability.sentry import (
    capture_unexpected,
    init_sentry,
    is_business_failure,
    message_scope,
)

DSN = "https://public0123@o0.ingest.sentry.io/42"
CUSTOMER_PASSWORD = "Cust0mer-Secret-pw"
CREDENTIAL_PASSWORD = "Cred3ntial-Secret-pw"
API_KEY = "SG.api-KEY-abcdef0123456789"
AMQP_PASSWORD = "Amqp-Secret-pw-99"
SECRETS = (CUSTOMER_PASSWORD, CREDENTIAL_PASSWORD, API_KEY, AMQP_PASSWORD)


class CapturingTransport(Transport):
    """Keeps every envelope the SDK would have sent, serialized as it would go on the wire."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.sent: list[bytes] = []
        self._lock = threading.Lock()

    def capture_envelope(self, envelope: Envelope) -> None:
        with self._lock:
            self.sent.append(envelope.serialize())

    def wire(self) -> str:
        with self._lock:
            return b"\n".join(self.sent).decode("utf-8", "replace")


@pytest.fixture
def transport() -> Iterator[CapturingTransport]:
    # Given a worker that registered its own secrets and started Sentry
    clear_registered_secrets()
    register_secret(API_KEY)
    register_secret(AMQP_PASSWORD)
    captured = CapturingTransport()
    assert init_sentry(DSN, release="provisioner@test", environment="test", transport=captured)
    yield captured
    sentry_sdk.get_client().close()
    sentry_sdk.init()  # back to a disabled client for the other tests
    clear_registered_secrets()


def fail_with_secrets_everywhere() -> None:
    password = CUSTOMER_PASSWORD  # noqa: F841 - a local variable holding a secret
    credential = {"credential_password": CREDENTIAL_PASSWORD}  # noqa: F841
    raise RuntimeError(
        f"API said no to password={CUSTOMER_PASSWORD}&credential_password={CREDENTIAL_PASSWORD}"
        f"&api_key={API_KEY} over amqp://worker:{AMQP_PASSWORD}@rabbit:5672/"
    )


def decorate_scope_with_secrets(scope: Any) -> None:
    scope.set_tag("debug_form", f"new_password={CUSTOMER_PASSWORD}")
    scope.set_context(
        "request",
        {
            "url": f"https://api.sendgrid.com/apiv2/reseller.add.json?api_key={API_KEY}",
            "data": {
                "password": CUSTOMER_PASSWORD,
                "credential_password": CREDENTIAL_PASSWORD,
                "api_key": API_KEY,
                "amqp_url": f"amqp://worker:{AMQP_PASSWORD}@rabbit/",
            },
            "headers": {"Authorization": f"Basic {API_KEY}"},
        },
    )
    scope.set_extra("body", f'{{"type": "CreateCustomer", "password": "{CUSTOMER_PASSWORD}"}}')
    sentry_sdk.add_breadcrumb(
        category="broker", message=f"connecting to amqp://worker:{AMQP_PASSWORD}@rabbit/"
    )
    logging.getLogger("worker.api").warning("retrying api_key=%s", API_KEY)


def test_unexpected_exception_is_sent_without_any_secret(transport: CapturingTransport) -> None:
    # When an unexpected exception carrying secrets in every place is captured in a message scope
    with message_scope("AddCredential", "key-1", "corr-1", 3) as scope:
        decorate_scope_with_secrets(scope.scope)
        try:
            fail_with_secrets_everywhere()
        except RuntimeError as exc:
            event_id = capture_unexpected(exc)
        scope.set_outcome("error")
    sentry_sdk.flush()
    # Then an event was sent with the exception type, the tags and the command context
    assert event_id is not None
    wire = transport.wire()
    assert "RuntimeError" in wire
    assert '"command_type":"AddCredential"' in wire
    assert '"idempotency_key":"key-1"' in wire
    assert '"correlation_id":"corr-1"' in wire
    assert '"attempt":3' in wire
    assert "fail_with_secrets_everywhere" in wire  # the stack trace is still useful
    # And none of the secrets is anywhere in what would have left the process
    for secret in SECRETS:
        assert secret not in wire, secret


def test_outcome_tag_is_set_on_the_message_scope(transport: CapturingTransport) -> None:
    # When the outcome is tagged before an exception is captured
    with message_scope("DeleteCustomer", "key-2", None, 1) as scope:
        scope.set_outcome("retry")
        capture_unexpected(KeyError("missing"))
    sentry_sdk.flush()
    # Then the event carries both tags
    wire = transport.wire()
    assert '"outcome":"retry"' in wire
    assert '"command_type":"DeleteCustomer"' in wire


def test_scopes_do_not_leak_between_messages(transport: CapturingTransport) -> None:
    # Given one message scope tagged as ListApps
    with message_scope("ListApps", "key-a", None, 1):
        pass
    # When an exception is captured outside any message scope
    capture_unexpected(ValueError("outside"))
    sentry_sdk.flush()
    # Then it has no command tag from the earlier message
    wire = transport.wire()
    assert "ValueError" in wire
    assert "ListApps" not in wire


@pytest.mark.parametrize(
    "exc",
    [
        PermanentError(ErrorCode.ALREADY_EXISTS, "Username already exists"),
        TransientError("503 from the API"),
        InvalidCommand([]),
    ],
    ids=["permanent", "transient", "invalid"],
)
def test_business_failures_are_not_sent(transport: CapturingTransport, exc: Exception) -> None:
    # When a business failure is captured, through the helper or straight through the SDK
    with message_scope("CreateCustomer", "key-3", None, 1):
        assert capture_unexpected(exc) is None
        sentry_sdk.capture_exception(exc)
    # And an unexpected error follows, proving the transport works
    capture_unexpected(RuntimeError("a real bug"))
    sentry_sdk.flush()
    # Then only the unexpected error was sent
    wire = transport.wire()
    assert is_business_failure(exc)
    assert type(exc).__name__ not in wire
    assert "a real bug" in wire


def test_no_dsn_means_no_sentry(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an SDK whose start-up is watched
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(sentry_sdk, "init", lambda **kw: calls.append(kw))
    # When Sentry is started without a DSN
    started = init_sentry("", release="provisioner@test")
    # Then it reports that it did nothing, and did nothing
    assert started is False
    assert calls == []


def test_client_options_keep_pii_and_locals_out(transport: CapturingTransport) -> None:
    # Then the running client neither sends default PII nor local variables
    client = sentry_sdk.get_client()
    assert client.should_send_default_pii() is False
    assert client.options["include_local_variables"] is False
    assert client.options["release"] == "provisioner@test"


def test_with_sentry_off_a_message_runs_in_no_scope_of_its_own() -> None:
    # Given no Sentry client (no DSN configured)
    global_scope = sentry_sdk.get_global_scope()
    previous = global_scope.client
    global_scope.set_client(None)
    try:
        outer = sentry_sdk.get_isolation_scope()
        # When a message runs in its message scope and ends
        with message_scope("CreateCustomer", "key-4", None, 1) as scope:
            inner = sentry_sdk.get_isolation_scope()
            scope.set_outcome("succeeded")
    finally:
        global_scope.set_client(previous)
    # Then no scope was forked for it (nothing would be captured) and nothing was tagged
    assert inner is outer
    assert "outcome" not in outer._tags
