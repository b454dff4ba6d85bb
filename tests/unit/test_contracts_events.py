"""Events: one type per outcome, common fields, routing keys, round trips."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest

from contracts import (
    COMMAND_TYPES,
    SUCCESS_EVENTS,
    App,
    AppSettingsRetrieved,
    AppsListed,
    CommandFailed,
    CommandRejected,
    Customer,
    CustomerCreated,
    CustomersListed,
    ErrorCode,
    ErrorInfo,
    EventBase,
    Outcome,
    decode_event,
    encode_event,
    make_event,
    outcome_of,
    routing_key,
)

COMMON: dict[str, Any] = {
    "command_type": "ListApps",
    "idempotency_key": "key-1",
    "customer": "c@example.com",
    "correlation_id": "corr-1",
    "attempts": 2,
}
DESIGN_SUCCESS_EVENTS = {
    "CreateCustomer": "CustomerCreated",
    "DeleteCustomer": "CustomerDeleted",
    "ListCustomers": "CustomersListed",
    "EnableCustomer": "CustomerEnabled",
    "DisableCustomer": "CustomerDisabled",
    "EnableWebsiteAccess": "WebsiteAccessEnabled",
    "DisableWebsiteAccess": "WebsiteAccessDisabled",
    "UpdateCustomerProfile": "CustomerProfileUpdated",
    "ResetPassword": "PasswordReset",
    "ChangeUsername": "UsernameChanged",
    "ChangeEmail": "EmailChanged",
    "AddCredential": "CredentialAdded",
    "ChangeCredentialPassword": "CredentialPasswordChanged",
    "DeleteCredential": "CredentialDeleted",
    "ListApps": "AppsListed",
    "ActivateApp": "AppActivated",
    "DeactivateApp": "AppDeactivated",
    "ConfigureApp": "AppConfigured",
    "GetAppSettings": "AppSettingsRetrieved",
}
PAYLOADS: dict[type[EventBase], dict[str, Any]] = {
    CustomersListed: {"customers": [Customer(id="1", username="u", active=False)]},
    AppsListed: {"apps": [App(name="clicktrack", title="Click Tracking", activated=True)]},
    AppSettingsRetrieved: {"settings": {"field": "value"}},
}


def test_success_events_follow_the_design_table() -> None:
    assert {k: v.__name__ for k, v in SUCCESS_EVENTS.items()} == DESIGN_SUCCESS_EVENTS
    assert set(SUCCESS_EVENTS) == set(COMMAND_TYPES)
    for cls in SUCCESS_EVENTS.values():
        assert cls.__struct_config__.tag == cls.__name__


@pytest.mark.parametrize("cls", [*SUCCESS_EVENTS.values(), CommandFailed, CommandRejected])
def test_every_event_round_trips_with_its_common_fields(cls: type[EventBase]) -> None:
    # Given an event built with the convenience constructor
    payload = dict(PAYLOADS.get(cls, {}))
    if cls in (CommandFailed, CommandRejected):
        payload["error"] = ErrorInfo(code=ErrorCode.API_REJECTED, message="m", api_errors=["e"])
    event = make_event(cls, **COMMON, **payload)
    # When encoded and decoded
    wire = encode_event(event)
    decoded = decode_event(wire)
    # Then it is equal and carries every common field on the wire
    assert decoded == event
    body = json.loads(wire)
    assert body["type"] == cls.__name__
    for field in ("event_id", "occurred_at", *COMMON):
        assert field in body
    assert body["occurred_at"].endswith("Z")


def test_make_event_fills_a_fresh_id_and_utc_now() -> None:
    # Given two events made one after the other
    before = datetime.now(UTC)
    first = make_event(CustomerCreated, **COMMON)
    second = make_event(CustomerCreated, **COMMON)
    # Then their ids differ and occurred_at is a UTC time not before the call
    assert first.event_id != second.event_id and len(first.event_id) == 32
    assert first.occurred_at.utcoffset() == timedelta(0)
    assert first.occurred_at >= before


@pytest.mark.parametrize(
    "occurred_at",
    [datetime(2026, 1, 1, 12, 0), datetime(2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))],
)
def test_occurred_at_must_be_utc(occurred_at: datetime) -> None:
    fields = {**COMMON, "event_id": "e", "occurred_at": occurred_at}
    with pytest.raises(ValueError, match="UTC"):
        CustomerCreated(**fields)


def test_decoding_a_non_utc_event_fails() -> None:
    body = encode_event(make_event(CustomerCreated, **COMMON)).replace(b'Z"', b'+02:00"')
    with pytest.raises(msgspec.ValidationError):
        decode_event(body)


def test_consumers_tolerate_fields_added_later() -> None:
    # Given an event with a field this version does not know
    body = json.loads(encode_event(make_event(CustomerCreated, **COMMON)))
    body["added_in_v2"] = 1
    # Then it still decodes
    assert isinstance(decode_event(json.dumps(body).encode()), CustomerCreated)


def test_error_info_defaults() -> None:
    info = ErrorInfo(code=ErrorCode.RETRIES_EXHAUSTED, message="gave up")
    assert (info.api_errors, info.retryable) == ([], False)
    assert msgspec.json.decode(msgspec.json.encode(info))["code"] == "retries_exhausted"


def test_error_codes_are_the_lower_case_names() -> None:
    assert [c.value for c in ErrorCode] == [c.name.lower() for c in ErrorCode]
    assert {c.name for c in ErrorCode} == {
        "INVALID_COMMAND",
        "IDEMPOTENCY_CONFLICT",
        "CUSTOMER_NOT_FOUND",
        "ALREADY_EXISTS",
        "API_REJECTED",
        "AUTH_FAILED",
        "RETRIES_EXHAUSTED",
        "NOT_FOUND",
        "DELIVERY_LIMIT",
    }


@pytest.mark.parametrize(
    ("command_type", "outcome", "key"),
    [
        ("CreateCustomer", Outcome.SUCCEEDED, "CreateCustomer.succeeded"),
        ("DeleteCredential", Outcome.FAILED, "DeleteCredential.failed"),
        ("ConfigureApp", Outcome.REJECTED, "ConfigureApp.rejected"),
        (None, Outcome.REJECTED, "unknown.rejected"),
        ("DropDatabase", Outcome.REJECTED, "unknown.rejected"),
        ("CreateCustomer.#", Outcome.REJECTED, "unknown.rejected"),
    ],
)
def test_routing_key(command_type: str | None, outcome: Outcome, key: str) -> None:
    assert routing_key(command_type, outcome) == key


def test_outcome_of_each_event_kind() -> None:
    error = ErrorInfo(code=ErrorCode.NOT_FOUND, message="m")
    assert outcome_of(make_event(CustomerCreated, **COMMON)) is Outcome.SUCCEEDED
    assert outcome_of(make_event(CommandFailed, **COMMON, error=error)) is Outcome.FAILED
    assert outcome_of(make_event(CommandRejected, **COMMON, error=error)) is Outcome.REJECTED


def test_customer_row_defaults_match_the_api_profile() -> None:
    row = msgspec.convert({"id": "123", "username": "u"}, Customer)
    assert (row.active, row.company, row.email) == (True, "", "")


@pytest.mark.parametrize("body", [b"", b"[]", b'{"type": "Nope"}', b"[" * 100_000])
def test_bad_event_bodies_raise_msgspec_errors(body: bytes) -> None:
    with pytest.raises((msgspec.DecodeError, msgspec.ValidationError)):
        decode_event(body)
