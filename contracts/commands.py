"""The 19 commands publishers send, one frozen Struct per reseller API call.

Every class spells out its wire configuration (``tag="<ClassName>"`` included) so that
renaming a class never changes the wire. Field requirements live in the annotated types of
``contracts.rules``. Construct with keywords: ``DeleteCustomer(idempotency_key=..., customer=...)``.
"""

from __future__ import annotations

from typing import Final

import msgspec

from contracts.rules import (
    AppName,
    AppSettings,
    BillingDate,
    CredentialName,
    CredentialUser,
    CustomerRef,
    Email,
    IdempotencyKey,
    IpAddress,
    IpGroup,
    ListLimit,
    ListOffset,
    LongText,
    NewEmail,
    NewUsername,
    PersonName,
    PlaceText,
    ShortText,
    Username,
)
from contracts.secret import Secret

# Password-like fields are Secret: plain strings on the command wire only.
Password = Secret


class CommandBase(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, tag_field="type"
):
    idempotency_key: IdempotencyKey


class CreateCustomer(
    CommandBase,
    frozen=True,
    forbid_unknown_fields=True,
    kw_only=True,
    tag_field="type",
    tag="CreateCustomer",
):
    username: Username
    password: Password
    email: Email
    first_name: PersonName
    last_name: PersonName
    address: PlaceText
    city: PlaceText
    state: PlaceText
    zip: ShortText
    country: PlaceText
    phone: ShortText
    website: LongText
    company: LongText
    package: LongText
    whitelabel: LongText
    ip_groups: list[IpGroup] = []
    ips: list[IpAddress] = []
    # apiv2/v1: "Either true or false" when the customer is free; null leaves it unsent.
    free_user: bool | None = None
    billing_date: BillingDate | None = None


class _CustomerCommand(
    CommandBase, frozen=True, forbid_unknown_fields=True, kw_only=True, tag_field="type"
):
    customer: CustomerRef


class DeleteCustomer(
    _CustomerCommand,
    frozen=True,
    forbid_unknown_fields=True,
    kw_only=True,
    tag_field="type",
    tag="DeleteCustomer",
):
    pass


class ListCustomers(
    CommandBase,
    frozen=True,
    forbid_unknown_fields=True,
    kw_only=True,
    tag_field="type",
    tag="ListCustomers",
):
    """Search filters (all optional; a filter longer than its field could never match)."""

    id: ShortText | None = None
    username: Username | None = None
    email: LongText | None = None
    active: bool | None = None
    first_name: PersonName | None = None
    last_name: PersonName | None = None
    address: PlaceText | None = None
    city: PlaceText | None = None
    state: PlaceText | None = None
    country: PlaceText | None = None
    zip: ShortText | None = None
    phone: ShortText | None = None
    website: LongText | None = None
    company: LongText | None = None
    limit: ListLimit | None = None
    offset: ListOffset | None = None


class EnableCustomer(
    _CustomerCommand,
    frozen=True,
    forbid_unknown_fields=True,
    kw_only=True,
    tag_field="type",
    tag="EnableCustomer",
):
    pass


class DisableCustomer(
    _CustomerCommand,
    frozen=True,
    forbid_unknown_fields=True,
    kw_only=True,
    tag_field="type",
    tag="DisableCustomer",
):
    pass


class EnableWebsiteAccess(
    _CustomerCommand,
    frozen=True,
    forbid_unknown_fields=True,
    kw_only=True,
    tag_field="type",
    tag="EnableWebsiteAccess",
):
    pass


class DisableWebsiteAccess(
    _CustomerCommand,
    frozen=True,
    forbid_unknown_fields=True,
    kw_only=True,
    tag_field="type",
    tag="DisableWebsiteAccess",
):
    pass


class UpdateCustomerProfile(
    _CustomerCommand,
    frozen=True,
    forbid_unknown_fields=True,
    kw_only=True,
    tag_field="type",
    tag="UpdateCustomerProfile",
):
    """Only the fields given change; the lengths are reseller.add's (the update documents
    name none, and a value reseller.add would refuse cannot be a valid profile)."""

    first_name: PersonName | None = None
    last_name: PersonName | None = None
    address: PlaceText | None = None
    city: PlaceText | None = None
    state: PlaceText | None = None
    country: PlaceText | None = None
    zip: ShortText | None = None
    phone: ShortText | None = None
    website: LongText | None = None
    company: LongText | None = None


PROFILE_FIELDS: Final = (
    "first_name",
    "last_name",
    "address",
    "city",
    "state",
    "country",
    "zip",
    "phone",
    "website",
    "company",
)


class ResetPassword(
    _CustomerCommand,
    frozen=True,
    forbid_unknown_fields=True,
    kw_only=True,
    tag_field="type",
    tag="ResetPassword",
):
    new_password: Password


class ChangeUsername(
    _CustomerCommand,
    frozen=True,
    forbid_unknown_fields=True,
    kw_only=True,
    tag_field="type",
    tag="ChangeUsername",
):
    new_username: NewUsername


class ChangeEmail(
    _CustomerCommand,
    frozen=True,
    forbid_unknown_fields=True,
    kw_only=True,
    tag_field="type",
    tag="ChangeEmail",
):
    new_email: NewEmail


class _CredentialCommand(
    CommandBase, frozen=True, forbid_unknown_fields=True, kw_only=True, tag_field="type"
):
    customer: CredentialUser
    credential_name: CredentialName


class AddCredential(
    _CredentialCommand,
    frozen=True,
    forbid_unknown_fields=True,
    kw_only=True,
    tag_field="type",
    tag="AddCredential",
):
    credential_password: Password


class ChangeCredentialPassword(
    _CredentialCommand,
    frozen=True,
    forbid_unknown_fields=True,
    kw_only=True,
    tag_field="type",
    tag="ChangeCredentialPassword",
):
    new_credential_password: Password


class DeleteCredential(
    _CredentialCommand,
    frozen=True,
    forbid_unknown_fields=True,
    kw_only=True,
    tag_field="type",
    tag="DeleteCredential",
):
    pass


class ListApps(
    _CustomerCommand,
    frozen=True,
    forbid_unknown_fields=True,
    kw_only=True,
    tag_field="type",
    tag="ListApps",
):
    pass


class _AppCommand(
    _CustomerCommand, frozen=True, forbid_unknown_fields=True, kw_only=True, tag_field="type"
):
    app: AppName


class ActivateApp(
    _AppCommand,
    frozen=True,
    forbid_unknown_fields=True,
    kw_only=True,
    tag_field="type",
    tag="ActivateApp",
):
    pass


class DeactivateApp(
    _AppCommand,
    frozen=True,
    forbid_unknown_fields=True,
    kw_only=True,
    tag_field="type",
    tag="DeactivateApp",
):
    pass


class ConfigureApp(
    _AppCommand,
    frozen=True,
    forbid_unknown_fields=True,
    kw_only=True,
    tag_field="type",
    tag="ConfigureApp",
):
    settings: AppSettings


class GetAppSettings(
    _AppCommand,
    frozen=True,
    forbid_unknown_fields=True,
    kw_only=True,
    tag_field="type",
    tag="GetAppSettings",
):
    pass


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
