"""The 19 commands publishers send, one frozen Struct per reseller API call, and their union.

The Structs live by what they are about: ``contracts.customer_commands`` (the customer's
account, and ``CommandBase``) and ``contracts.credential_app_commands`` (its credentials and
apps). Construct with keywords: ``DeleteCustomer(idempotency_key=..., customer=...)``.
"""

from __future__ import annotations

from typing import Final

from contracts.credential_app_commands import (
    ActivateApp,
    AddCredential,
    ChangeCredentialPassword,
    ConfigureApp,
    DeactivateApp,
    DeleteCredential,
    GetAppSettings,
    ListApps,
)
from contracts.customer_commands import (
    PROFILE_FIELDS,
    ChangeEmail,
    ChangeUsername,
    CommandBase,
    CreateCustomer,
    DeleteCustomer,
    DisableCustomer,
    DisableWebsiteAccess,
    EnableCustomer,
    EnableWebsiteAccess,
    ListCustomers,
    ResetPassword,
    UpdateCustomerProfile,
)

__all__ = [
    "COMMAND_TYPES",
    "PROFILE_FIELDS",
    "SECRET_FIELDS",
    "ActivateApp",
    "AddCredential",
    "ChangeCredentialPassword",
    "ChangeEmail",
    "ChangeUsername",
    "Command",
    "CommandBase",
    "ConfigureApp",
    "CreateCustomer",
    "DeactivateApp",
    "DeleteCredential",
    "DeleteCustomer",
    "DisableCustomer",
    "DisableWebsiteAccess",
    "EnableCustomer",
    "EnableWebsiteAccess",
    "GetAppSettings",
    "ListApps",
    "ListCustomers",
    "ResetPassword",
    "UpdateCustomerProfile",
    "command_customer",
]

Command = (
    CreateCustomer
    | DeleteCustomer
    | ListCustomers
    | EnableCustomer
    | DisableCustomer
    | EnableWebsiteAccess
    | DisableWebsiteAccess
    | UpdateCustomerProfile
    | ResetPassword
    | ChangeUsername
    | ChangeEmail
    | AddCredential
    | ChangeCredentialPassword
    | DeleteCredential
    | ListApps
    | ActivateApp
    | DeactivateApp
    | ConfigureApp
    | GetAppSettings
)

COMMAND_TYPES: Final[dict[str, type[CommandBase]]] = {cls.__name__: cls for cls in Command.__args__}

SECRET_FIELDS: Final = frozenset(
    {"password", "new_password", "credential_password", "new_credential_password"}
)


def command_customer(cmd: CommandBase) -> str | None:
    """The customer a command is about: the key for per-customer ordering and events."""
    if isinstance(cmd, CreateCustomer):
        return cmd.username
    if isinstance(cmd, ListCustomers):
        return cmd.username
    customer = getattr(cmd, "customer", None)
    return customer if isinstance(customer, str) else None
