"""One valid example of every command, for documentation, demos and tests."""

from __future__ import annotations

from datetime import UTC, date, datetime

from contracts.commands import (
    ActivateApp,
    AddCredential,
    ChangeCredentialPassword,
    ChangeEmail,
    ChangeUsername,
    CommandBase,
    ConfigureApp,
    CreateCustomer,
    DeactivateApp,
    DeleteCredential,
    DeleteCustomer,
    DisableCustomer,
    DisableWebsiteAccess,
    EnableCustomer,
    EnableWebsiteAccess,
    GetAppSettings,
    ListApps,
    ListCustomers,
    ResetPassword,
    UpdateCustomerProfile,
)
from contracts.secret import Secret

EXAMPLE_CUSTOMER = "customer@example.com"


def example_commands(today: date | None = None) -> dict[str, CommandBase]:
    """Command type name -> a valid instance (``billing_date`` is ``today``, UTC default)."""
    examples: list[CommandBase] = [
        _example_create_customer(today or datetime.now(UTC).date()),
        *_account_examples(EXAMPLE_CUSTOMER),
        *_credential_and_app_examples(EXAMPLE_CUSTOMER),
    ]
    return {type(cmd).__name__: cmd for cmd in examples}


def _example_create_customer(today: date) -> CreateCustomer:
    c = EXAMPLE_CUSTOMER
    return CreateCustomer(
        idempotency_key="create-1",
        username=c,
        password=Secret("s3cret-pass"),
        email=c,
        first_name="Ada",
        last_name="Lovelace",
        address="12 Analytical Row",
        city="London",
        state="LDN",
        zip="N1 9GU",
        country="GB",
        phone="+44 20 7946 0000",
        website="https://example.com",
        company="Engines Ltd",
        package="Silver",
        whitelabel="sendgrid.me",
        ip_groups=["marketing"],
        ips=["192.0.2.10", "2001:db8::10"],
        free_user=False,
        billing_date=today,
    )


def _account_examples(c: str) -> list[CommandBase]:
    return [
        DeleteCustomer(idempotency_key="delete-1", customer=c),
        ListCustomers(idempotency_key="list-1", username=c, active=True, limit=10, offset=0),
        EnableCustomer(idempotency_key="enable-1", customer=c),
        DisableCustomer(idempotency_key="disable-1", customer=c),
        EnableWebsiteAccess(idempotency_key="web-enable-1", customer=c),
        DisableWebsiteAccess(idempotency_key="web-disable-1", customer=c),
        UpdateCustomerProfile(
            idempotency_key="profile-1", customer=c, first_name="Ada", company="Engines Ltd"
        ),
        ResetPassword(idempotency_key="password-1", customer=c, new_password=Secret("n3w-pass")),
        ChangeUsername(idempotency_key="username-1", customer=c, new_username="ada@example.org"),
        ChangeEmail(idempotency_key="email-1", customer=c, new_email="billing@example.org"),
    ]


def _credential_and_app_examples(c: str) -> list[CommandBase]:
    return [
        AddCredential(
            idempotency_key="cred-add-1",
            customer=c,
            credential_name="smtp-relay",
            credential_password=Secret("cred-pass-1"),
        ),
        ChangeCredentialPassword(
            idempotency_key="cred-edit-1",
            customer=c,
            credential_name="smtp-relay",
            new_credential_password=Secret("cred-pass-2"),
        ),
        DeleteCredential(idempotency_key="cred-del-1", customer=c, credential_name="smtp-relay"),
        ListApps(idempotency_key="apps-1", customer=c),
        ActivateApp(idempotency_key="app-on-1", customer=c, app="clicktrack"),
        DeactivateApp(idempotency_key="app-off-1", customer=c, app="clicktrack"),
        ConfigureApp(
            idempotency_key="app-setup-1",
            customer=c,
            app="clicktrack",
            settings={"enable_text": "1"},
        ),
        GetAppSettings(idempotency_key="app-get-1", customer=c, app="clicktrack"),
    ]


# The profile every generated CreateCustomer shares (tests, benchmarks, the soak).
EXAMPLE_PROFILE: dict[str, str] = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "address": "1 Analytical Row",
    "city": "London",
    "state": "LDN",
    "zip": "N1",
    "country": "UK",
    "phone": "555-0100",
    "website": "example.com",
    "company": "Engines Ltd",
    "package": "Basic",
    "whitelabel": "sendgrid.me",
}


def create_customer_body(
    username: str, *, key: str, password: str, email: str | None = None
) -> dict[str, object]:
    """A valid CreateCustomer as the JSON object a publisher sends."""
    return {
        "type": "CreateCustomer",
        "idempotency_key": key,
        "username": username,
        "password": password,
        "email": email or f"{username}@example.com",
        **EXAMPLE_PROFILE,
    }
