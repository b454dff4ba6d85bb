"""The commands about a customer's account (reseller.add, delete, profile, enable/disable,
website access, password, username, email) and the base every command Struct derives from.

Every class spells out its wire configuration (``tag="<ClassName>"`` included) so that
renaming a class never changes the wire. Field requirements live in the annotated types of
``contracts.rules``. The union of all commands is ``contracts.commands.Command``.
"""

from __future__ import annotations

from typing import Final

import msgspec

from contracts.rules import (
    BillingDate,
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


class CustomerCommand(
    CommandBase, frozen=True, forbid_unknown_fields=True, kw_only=True, tag_field="type"
):
    customer: CustomerRef


class DeleteCustomer(
    CustomerCommand,
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
    CustomerCommand,
    frozen=True,
    forbid_unknown_fields=True,
    kw_only=True,
    tag_field="type",
    tag="EnableCustomer",
):
    pass


class DisableCustomer(
    CustomerCommand,
    frozen=True,
    forbid_unknown_fields=True,
    kw_only=True,
    tag_field="type",
    tag="DisableCustomer",
):
    pass


class EnableWebsiteAccess(
    CustomerCommand,
    frozen=True,
    forbid_unknown_fields=True,
    kw_only=True,
    tag_field="type",
    tag="EnableWebsiteAccess",
):
    pass


class DisableWebsiteAccess(
    CustomerCommand,
    frozen=True,
    forbid_unknown_fields=True,
    kw_only=True,
    tag_field="type",
    tag="DisableWebsiteAccess",
):
    pass


class UpdateCustomerProfile(
    CustomerCommand,
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
    CustomerCommand,
    frozen=True,
    forbid_unknown_fields=True,
    kw_only=True,
    tag_field="type",
    tag="ResetPassword",
):
    new_password: Password


class ChangeUsername(
    CustomerCommand,
    frozen=True,
    forbid_unknown_fields=True,
    kw_only=True,
    tag_field="type",
    tag="ChangeUsername",
):
    new_username: NewUsername


class ChangeEmail(
    CustomerCommand,
    frozen=True,
    forbid_unknown_fields=True,
    kw_only=True,
    tag_field="type",
    tag="ChangeEmail",
):
    new_email: NewEmail
