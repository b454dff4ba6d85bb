"""Result events: exactly one per command, published on the events exchange.

Events never contain a ``Secret``: no event type has a password field, and ``encode_event``
(``contracts.event_codec``) refuses any ``Secret`` that might slip into one.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

import msgspec


class ErrorCode(StrEnum):
    """Stable machine-readable failure codes (consumers switch on these)."""

    INVALID_COMMAND = "invalid_command"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    CUSTOMER_NOT_FOUND = "customer_not_found"
    ALREADY_EXISTS = "already_exists"
    API_REJECTED = "api_rejected"
    AUTH_FAILED = "auth_failed"
    RETRIES_EXHAUSTED = "retries_exhausted"
    NOT_FOUND = "not_found"
    DELIVERY_LIMIT = "delivery_limit"


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"


class ErrorInfo(msgspec.Struct, frozen=True):
    code: ErrorCode
    message: str
    api_errors: list[str] = []
    retryable: bool = False


class Customer(msgspec.Struct, frozen=True):
    """One row of the API's ``profile/get`` answer, typed."""

    id: str = ""
    username: str = ""
    email: str = ""
    active: bool = True
    first_name: str = ""
    last_name: str = ""
    address: str = ""
    city: str = ""
    state: str = ""
    zip: str = ""
    country: str = ""
    phone: str = ""
    website: str = ""
    company: str = ""


class App(msgspec.Struct, frozen=True):
    name: str
    title: str = ""
    description: str = ""
    activated: bool = False


# Events do not forbid unknown fields: consumers must keep decoding when a later version
# adds a field. Subclasses inherit tag_field (frozen is restated for type checkers) and each
# writes its tag explicitly, so that renaming a class never changes the wire.
class EventBase(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    event_id: str
    command_type: str
    idempotency_key: str
    customer: str | None
    correlation_id: str | None
    occurred_at: datetime
    attempts: int

    def __post_init__(self) -> None:
        offset = self.occurred_at.utcoffset()
        if offset is None or offset != timedelta(0):
            raise ValueError("occurred_at must be a UTC datetime")


class CustomerCreated(EventBase, frozen=True, tag="CustomerCreated"):
    pass


class CustomerDeleted(EventBase, frozen=True, tag="CustomerDeleted"):
    pass


class CustomerEnabled(EventBase, frozen=True, tag="CustomerEnabled"):
    pass


class CustomerDisabled(EventBase, frozen=True, tag="CustomerDisabled"):
    pass


class WebsiteAccessEnabled(EventBase, frozen=True, tag="WebsiteAccessEnabled"):
    pass


class WebsiteAccessDisabled(EventBase, frozen=True, tag="WebsiteAccessDisabled"):
    pass


class CustomerProfileUpdated(EventBase, frozen=True, tag="CustomerProfileUpdated"):
    pass


class PasswordReset(EventBase, frozen=True, tag="PasswordReset"):
    pass


class UsernameChanged(EventBase, frozen=True, tag="UsernameChanged"):
    pass


class EmailChanged(EventBase, frozen=True, tag="EmailChanged"):
    pass


class CredentialAdded(EventBase, frozen=True, tag="CredentialAdded"):
    pass


class CredentialPasswordChanged(EventBase, frozen=True, tag="CredentialPasswordChanged"):
    pass


class CredentialDeleted(EventBase, frozen=True, tag="CredentialDeleted"):
    pass


class AppActivated(EventBase, frozen=True, tag="AppActivated"):
    pass


class AppDeactivated(EventBase, frozen=True, tag="AppDeactivated"):
    pass


class AppConfigured(EventBase, frozen=True, tag="AppConfigured"):
    pass


class CustomersListed(EventBase, frozen=True, tag="CustomersListed"):
    customers: list[Customer]


class AppsListed(EventBase, frozen=True, tag="AppsListed"):
    apps: list[App]


class AppSettingsRetrieved(EventBase, frozen=True, tag="AppSettingsRetrieved"):
    settings: dict[str, str]


class CommandFailed(EventBase, frozen=True, tag="CommandFailed"):
    """The API refused the command, or transient errors outlasted every retry."""

    error: ErrorInfo


class CommandRejected(EventBase, frozen=True, tag="CommandRejected"):
    """Not a valid command: no API call was made."""

    error: ErrorInfo


Event = (
    CustomerCreated
    | CustomerDeleted
    | CustomerEnabled
    | CustomerDisabled
    | WebsiteAccessEnabled
    | WebsiteAccessDisabled
    | CustomerProfileUpdated
    | PasswordReset
    | UsernameChanged
    | EmailChanged
    | CredentialAdded
    | CredentialPasswordChanged
    | CredentialDeleted
    | AppActivated
    | AppDeactivated
    | AppConfigured
    | CustomersListed
    | AppsListed
    | AppSettingsRetrieved
    | CommandFailed
    | CommandRejected
)


# Command type name -> the event its success produces (DESIGN.md's table).
SUCCESS_EVENTS: dict[str, type[EventBase]] = {
    "CreateCustomer": CustomerCreated,
    "DeleteCustomer": CustomerDeleted,
    "ListCustomers": CustomersListed,
    "EnableCustomer": CustomerEnabled,
    "DisableCustomer": CustomerDisabled,
    "EnableWebsiteAccess": WebsiteAccessEnabled,
    "DisableWebsiteAccess": WebsiteAccessDisabled,
    "UpdateCustomerProfile": CustomerProfileUpdated,
    "ResetPassword": PasswordReset,
    "ChangeUsername": UsernameChanged,
    "ChangeEmail": EmailChanged,
    "AddCredential": CredentialAdded,
    "ChangeCredentialPassword": CredentialPasswordChanged,
    "DeleteCredential": CredentialDeleted,
    "ListApps": AppsListed,
    "ActivateApp": AppActivated,
    "DeactivateApp": AppDeactivated,
    "ConfigureApp": AppConfigured,
    "GetAppSettings": AppSettingsRetrieved,
}

EVENT_TYPES: dict[str, type[EventBase]] = {cls.__name__: cls for cls in Event.__args__}
