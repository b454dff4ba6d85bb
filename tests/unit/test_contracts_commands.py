"""Commands: wire shape, round trips, the customer of a command, fingerprint material."""

from __future__ import annotations

import json
from datetime import date

import msgspec
import pytest

from contracts import (
    COMMAND_TYPES,
    CommandBase,
    CreateCustomer,
    DeleteCustomer,
    ListCustomers,
    Secret,
    command_customer,
    decode_command,
    encode_command,
    fingerprint_material,
)
from contracts.commands import SECRET_FIELDS
from contracts.examples import EXAMPLE_CUSTOMER, example_commands

TODAY = date(2026, 1, 31)
EXAMPLES = example_commands(TODAY)
DESIGN_COMMANDS = [
    "CreateCustomer",
    "DeleteCustomer",
    "ListCustomers",
    "EnableCustomer",
    "DisableCustomer",
    "EnableWebsiteAccess",
    "DisableWebsiteAccess",
    "UpdateCustomerProfile",
    "ResetPassword",
    "ChangeUsername",
    "ChangeEmail",
    "AddCredential",
    "ChangeCredentialPassword",
    "DeleteCredential",
    "ListApps",
    "ActivateApp",
    "DeactivateApp",
    "ConfigureApp",
    "GetAppSettings",
]


def test_every_design_command_is_a_frozen_strict_tagged_struct() -> None:
    # Given the table of DESIGN.md
    # Then every command exists with tag = its class name, frozen, rejecting unknown fields
    assert list(COMMAND_TYPES) == DESIGN_COMMANDS
    for name, cls in COMMAND_TYPES.items():
        config = cls.__struct_config__
        assert (config.tag_field, config.tag) == ("type", name)
        assert config.frozen and config.forbid_unknown_fields


@pytest.mark.parametrize("name", DESIGN_COMMANDS)
def test_valid_example_round_trips(name: str) -> None:
    # Given a valid command
    command = EXAMPLES[name]
    # When it is encoded for the wire and decoded again
    wire = encode_command(command)
    decoded = decode_command(wire, today=TODAY)
    # Then the value is equal, typed, and the wire carries the tag
    assert decoded == command
    assert type(decoded) is COMMAND_TYPES[name]
    assert json.loads(wire)["type"] == name


def test_secrets_are_plain_strings_on_the_command_wire_only() -> None:
    # Given a command holding a password
    command = EXAMPLES["CreateCustomer"]
    assert isinstance(command, CreateCustomer)
    # When encoded for publishing
    body = json.loads(encode_command(command))
    # Then the wire has the revealed string and decoding wraps it again
    assert body["password"] == "s3cret-pass"
    decoded = decode_command(encode_command(command), today=TODAY)
    assert isinstance(decoded, CreateCustomer)
    assert isinstance(decoded.password, Secret)
    assert decoded.password.reveal() == "s3cret-pass"


def test_secret_fields_are_typed_secret() -> None:
    # Given every command's fields, Then each password-like field is a Secret
    for cls in COMMAND_TYPES.values():
        hints = {f.name: f.type for f in msgspec.inspect.type_info(cls).fields}  # type: ignore[attr-defined]
        for name in SECRET_FIELDS & hints.keys():
            assert hints[name] == msgspec.inspect.CustomType(Secret), (cls.__name__, name)


def test_optional_fields_get_defaults() -> None:
    # Given a CreateCustomer body without the optional fields
    body = json.loads(encode_command(EXAMPLES["CreateCustomer"]))
    for optional in ("ip_groups", "ips", "free_user", "billing_date"):
        del body[optional]
    # When decoded
    command = decode_command(json.dumps(body).encode(), today=TODAY)
    # Then the defaults apply
    assert isinstance(command, CreateCustomer)
    assert (command.ip_groups, command.ips, command.free_user, command.billing_date) == (
        [],
        [],
        None,
        None,
    )


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (EXAMPLES["CreateCustomer"], EXAMPLE_CUSTOMER),
        (ListCustomers(idempotency_key="k", username="bob"), "bob"),
        (ListCustomers(idempotency_key="k"), None),
        (EXAMPLES["AddCredential"], EXAMPLE_CUSTOMER),
        (EXAMPLES["ConfigureApp"], EXAMPLE_CUSTOMER),
        (DeleteCustomer(idempotency_key="k", customer="carol"), "carol"),
    ],
)
def test_command_customer(command: CommandBase, expected: str | None) -> None:
    # Then the customer is the one the command is about
    assert command_customer(command) == expected


def test_every_example_has_its_customer() -> None:
    for name, command in EXAMPLES.items():
        # (the ListCustomers example filters on the example customer's username)
        assert command_customer(command) == EXAMPLE_CUSTOMER, name


def test_fingerprint_material_ignores_the_key_and_includes_secrets() -> None:
    # Given two commands that differ only by idempotency key
    a = DeleteCustomer(idempotency_key="one", customer="c1")
    b = DeleteCustomer(idempotency_key="two", customer="c1")
    # Then their material is equal, canonical (sorted keys) and has no key
    assert fingerprint_material(a) == fingerprint_material(b)
    assert fingerprint_material(a) == b'{"customer":"c1","type":"DeleteCustomer"}'
    # And a different password gives different material (secrets count)
    create = EXAMPLES["CreateCustomer"]
    assert isinstance(create, CreateCustomer)
    other = msgspec.structs.replace(create, password=Secret("another-pass"))
    assert fingerprint_material(create) != fingerprint_material(other)
    assert b"s3cret-pass" in fingerprint_material(create)


def test_fingerprint_material_differs_between_command_types() -> None:
    # Given two commands with the same fields but another type
    enable = EXAMPLES["EnableCustomer"]
    disable = EXAMPLES["DisableCustomer"]
    # Then the material differs
    assert fingerprint_material(enable) != fingerprint_material(disable)
