"""Validation: every documented requirement, every problem at once, one typed error."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest

from contracts import InvalidCommand, decode_command, encode_command
from contracts.examples import example_commands
from contracts.rules import latest_billing_date

TODAY = date(2026, 1, 31)  # the end of a long month: the billing window is clamped
EXAMPLES = example_commands(TODAY)
DELETE = object()


def body_of(name: str, **changes: Any) -> bytes:
    """The example of ``name`` as a JSON body, with fields replaced (or DELETE-d)."""
    body = json.loads(encode_command(EXAMPLES[name]))
    for field, value in changes.items():
        if value is DELETE:
            body.pop(field, None)
        else:
            body[field] = value
    return json.dumps(body).encode()


def problems_of(data: bytes) -> dict[str, str]:
    with pytest.raises(InvalidCommand) as caught:
        decode_command(data, today=TODAY)
    return {p.path: p.message for p in caught.value.problems}


VIOLATIONS = [
    # (command, field, bad value, expected path) -- one row per documented requirement
    ("CreateCustomer", "idempotency_key", "", "$.idempotency_key"),
    ("CreateCustomer", "idempotency_key", "k" * 256, "$.idempotency_key"),
    ("DeleteCustomer", "idempotency_key", DELETE, "$.idempotency_key"),
    ("CreateCustomer", "username", "u" * 65, "$.username"),
    ("CreateCustomer", "username", DELETE, "$.username"),
    ("CreateCustomer", "password", "12345", "$.password"),
    ("CreateCustomer", "email", "not-an-email", "$.email"),
    ("CreateCustomer", "email", "a@b.co\n", "$.email"),
    ("CreateCustomer", "email", "a" * 55 + "@example.com", "$.email"),
    ("CreateCustomer", "first_name", "f" * 51, "$.first_name"),
    ("CreateCustomer", "last_name", "l" * 51, "$.last_name"),
    ("CreateCustomer", "address", "a" * 101, "$.address"),
    ("CreateCustomer", "city", "c" * 101, "$.city"),
    ("CreateCustomer", "state", "s" * 101, "$.state"),
    ("CreateCustomer", "country", "c" * 101, "$.country"),
    ("CreateCustomer", "zip", "1" * 51, "$.zip"),
    ("CreateCustomer", "phone", "5" * 51, "$.phone"),
    ("CreateCustomer", "website", "w" * 256, "$.website"),
    ("CreateCustomer", "company", "c" * 256, "$.company"),
    ("CreateCustomer", "package", "p" * 256, "$.package"),
    ("CreateCustomer", "whitelabel", "w" * 256, "$.whitelabel"),
    ("CreateCustomer", "ip_groups", ["ok", "g" * 256], "$.ip_groups[1]"),
    ("CreateCustomer", "ips", ["192.0.2.1", "192.0.2.256"], "$.ips[1]"),
    ("CreateCustomer", "ips", ["2001:db8::g"], "$.ips[0]"),
    ("CreateCustomer", "ips", "192.0.2.1", "$.ips"),
    ("CreateCustomer", "free_user", "true", "$.free_user"),
    ("CreateCustomer", "free_user", 1, "$.free_user"),
    ("CreateCustomer", "billing_date", "2026-02-30", "$.billing_date"),
    ("CreateCustomer", "billing_date", "31/01/2026", "$.billing_date"),
    ("CreateCustomer", "billing_date", "20260131", "$.billing_date"),
    ("CreateCustomer", "billing_date", "2026-01-30", "$.billing_date"),  # before today
    ("CreateCustomer", "billing_date", "2026-03-01", "$.billing_date"),  # past 2/28
    ("ResetPassword", "new_password", "short", "$.new_password"),
    ("ResetPassword", "new_password", 123456, "$.new_password"),
    ("ChangeUsername", "new_username", "u" * 53 + "@example.com", "$.new_username"),
    ("ChangeUsername", "new_username", "someone@sendgrid.com", "$.new_username"),
    ("ChangeUsername", "new_username", "someone@Mail.SendGrid.COM", "$.new_username"),
    ("ChangeUsername", "new_username", "plainname", "$.new_username"),
    ("ChangeEmail", "new_email", "e" * 89 + "@example.com", "$.new_email"),
    ("ChangeEmail", "new_email", "no-at-sign.example.com", "$.new_email"),
    ("AddCredential", "customer", "12345", "$.customer"),
    ("AddCredential", "customer", "ab", "$.customer"),
    ("AddCredential", "customer", "c" * 65, "$.customer"),
    ("AddCredential", "credential_name", "ab", "$.credential_name"),
    ("AddCredential", "credential_name", "n" * 65, "$.credential_name"),
    ("AddCredential", "credential_name", "0123456789", "$.credential_name"),
    ("AddCredential", "credential_password", "12345", "$.credential_password"),
    ("ChangeCredentialPassword", "new_credential_password", "x", "$.new_credential_password"),
    ("ChangeCredentialPassword", "credential_name", "999", "$.credential_name"),
    ("DeleteCredential", "credential_name", "no", "$.credential_name"),
    ("DeleteCredential", "customer", "42", "$.customer"),
    ("ListCustomers", "limit", 0, "$.limit"),
    ("ListCustomers", "limit", 1.5, "$.limit"),
    ("ListCustomers", "limit", True, "$.limit"),
    ("ListCustomers", "offset", -1, "$.offset"),
    ("ListCustomers", "active", "yes", "$.active"),
    ("ListCustomers", "email", "e" * 256, "$.email"),
    ("ConfigureApp", "settings", {}, "$.settings"),
    ("ConfigureApp", "settings", {"field": 1}, "$.settings.field"),
    ("ConfigureApp", "settings", {"": "v"}, '$.settings[""]'),
    ("ConfigureApp", "settings", {"api_key": "v"}, "$.settings.api_key"),
    ("ConfigureApp", "settings", ["a", "b"], "$.settings"),
    ("ConfigureApp", "app", "", "$.app"),
    ("ActivateApp", "app", "a" * 256, "$.app"),
    ("DeactivateApp", "app", DELETE, "$.app"),
    ("GetAppSettings", "app", None, "$.app"),
    ("DeleteCustomer", "customer", "", "$.customer"),
    ("EnableCustomer", "customer", "c" * 65, "$.customer"),
    ("DisableCustomer", "customer", 7, "$.customer"),
    ("EnableWebsiteAccess", "customer", DELETE, "$.customer"),
    ("DisableWebsiteAccess", "customer", None, "$.customer"),
    ("UpdateCustomerProfile", "first_name", "f" * 51, "$.first_name"),
    ("UpdateCustomerProfile", "website", "w" * 256, "$.website"),
    ("ListApps", "unexpected", "x", "$.unexpected"),
]


@pytest.mark.parametrize(("name", "field", "value", "path"), VIOLATIONS)
def test_each_documented_requirement_is_enforced(
    name: str, field: str, value: Any, path: str
) -> None:
    # Given a valid command with one field breaking a requirement
    data = body_of(name, **{field: value})
    # When it is decoded
    problems = problems_of(data)
    # Then the single problem names that field
    assert list(problems) == [path]


def test_every_problem_is_reported_at_once() -> None:
    # Given a CreateCustomer breaking five rules and carrying an unknown field
    data = body_of(
        "CreateCustomer",
        email="nope",
        password="123",
        city=DELETE,
        ips=["1.2.3.4", "x"],
        billing_date="2026-13-01",
        surprise=True,
    )
    # When decoded, Then all six problems are listed
    assert set(problems_of(data)) == {
        "$.email",
        "$.password",
        "$.city",
        "$.ips[1]",
        "$.billing_date",
        "$.surprise",
    }


def test_update_profile_needs_at_least_one_field() -> None:
    # Given an update that names no profile field
    data = json.dumps(
        {"type": "UpdateCustomerProfile", "idempotency_key": "k", "customer": "c"}
    ).encode()
    # Then it is rejected as a whole
    assert list(problems_of(data)) == ["$"]


@pytest.mark.parametrize(
    ("data", "path"),
    [
        (b"", "$"),
        (b"\xff\xfe", "$"),
        (b"{not json", "$"),
        (b"[1, 2]", "$"),
        (b'"DeleteCustomer"', "$"),
        (b"null", "$"),
        (b"{}", "$.type"),
        (b'{"idempotency_key": "k", "customer": "c"}', "$.type"),
        (b'{"type": "DropDatabase", "idempotency_key": "k"}', "$.type"),
        (b'{"type": 3}', "$.type"),
        (b"[" * 100_000, "$"),
        (b'{"type": "ConfigureApp", "settings": ' + b"[" * 100_000, "$"),
    ],
)
def test_unusable_bodies_give_invalid_command(data: bytes, path: str) -> None:
    # Given a body that is not JSON, not an object, or has no known type
    # Then it is one InvalidCommand with a problem at the expected path
    assert list(problems_of(data)) == [path]


def test_rejected_command_keeps_best_effort_context() -> None:
    # Given an invalid command with a type, a key and a customer
    data = body_of("AddCredential", credential_password="1")
    # When decoded
    with pytest.raises(InvalidCommand) as caught:
        decode_command(data, today=TODAY)
    # Then the rejected event can be filled from it
    error = caught.value
    assert (error.command_type, error.idempotency_key, error.customer) == (
        "AddCredential",
        "cred-add-1",
        "customer@example.com",
    )


def test_context_of_create_customer_is_its_username_and_absent_for_garbage() -> None:
    with pytest.raises(InvalidCommand) as caught:
        decode_command(body_of("CreateCustomer", email="x"), today=TODAY)
    assert caught.value.customer == "customer@example.com"
    with pytest.raises(InvalidCommand) as garbage:
        decode_command(b"\x00")
    assert (garbage.value.command_type, garbage.value.idempotency_key) == (None, None)


def test_str_of_invalid_command_lists_problems_without_secret_values() -> None:
    # Given several bad passwords and other problems
    data = body_of("CreateCustomer", password="abc12", email="secret-ish")
    with pytest.raises(InvalidCommand) as caught:
        decode_command(data, today=TODAY)
    text = str(caught.value)
    # Then the message lists every problem by path but never the values
    assert "$.password" in text and "$.email" in text
    assert "abc12" not in text and "secret-ish" not in text


@pytest.mark.parametrize(
    ("signup", "latest"),
    [
        (date(2011, 2, 28), date(2011, 3, 28)),  # the documents' own example
        (date(2026, 1, 31), date(2026, 2, 28)),
        (date(2028, 1, 31), date(2028, 2, 29)),  # leap year
        (date(2026, 3, 31), date(2026, 4, 30)),
        (date(2026, 12, 15), date(2027, 1, 15)),
    ],
)
def test_one_billing_cycle_is_one_calendar_month_clamped(signup: date, latest: date) -> None:
    assert latest_billing_date(signup) == latest


@pytest.mark.parametrize("billing_date", ["2026-01-31", "2026-02-15", "2026-02-28"])
def test_billing_dates_inside_the_window_are_accepted(billing_date: str) -> None:
    # Given today 2026-01-31, When the date is between today and 2026-02-28, Then it passes
    command = decode_command(body_of("CreateCustomer", billing_date=billing_date), today=TODAY)
    assert command.billing_date == date.fromisoformat(billing_date)  # type: ignore[union-attr]


def test_billing_window_defaults_to_today_utc() -> None:
    # Given a billing date far in the past and no explicit today
    data = body_of("CreateCustomer", billing_date="2000-01-01")
    # Then the real clock rejects it
    with pytest.raises(InvalidCommand) as caught:
        decode_command(data)
    assert [p.path for p in caught.value.problems] == ["$.billing_date"]


@pytest.mark.parametrize(
    ("name", "changes"),
    [
        ("CreateCustomer", {"free_user": None, "billing_date": None, "ips": ["::ffff:1.2.3.4"]}),
        ("ChangeUsername", {"new_username": "ok@notsendgrid.com"}),
        ("AddCredential", {"customer": "123abc", "credential_name": "a1b"}),
        ("ListCustomers", {"limit": None, "offset": 0}),
        ("ConfigureApp", {"settings": {"field_name": ""}}),
    ],
)
def test_edge_values_that_the_documents_allow_are_accepted(
    name: str, changes: dict[str, Any]
) -> None:
    command = decode_command(body_of(name, **changes), today=TODAY)
    assert type(command).__name__ == name
