"""Input limits of the contract: control characters in identifiers, body size, bounded
rejections. Publishers decoding with ``contracts`` get the same answer as the worker."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest

from contracts import MAX_BODY_BYTES, InvalidCommand, decode_command, encode_command
from contracts.codec import MAX_LISTED_PROBLEMS
from contracts.examples import example_commands
from contracts.rules import NO_CONTROL_RULE

TODAY = date(2026, 1, 31)
EXAMPLES = example_commands(TODAY)

# Every identifier field: the key, usernames and customers, emails, credential and app names.
IDENTIFIER_FIELDS = [
    ("DeleteCustomer", "idempotency_key"),
    ("CreateCustomer", "username"),
    ("CreateCustomer", "email"),
    ("ListCustomers", "username"),
    ("EnableCustomer", "customer"),
    ("DisableCustomer", "customer"),
    ("ChangeUsername", "new_username"),
    ("ChangeEmail", "new_email"),
    ("AddCredential", "customer"),
    ("AddCredential", "credential_name"),
    ("DeleteCredential", "credential_name"),
    ("ActivateApp", "app"),
    ("ConfigureApp", "app"),
]
# NUL, other C0 controls, DEL and C1 controls; a trailing newline (which "$" would accept).
CONTROLS = ["\x00", "\x01", "\t", "\n", "\x1b", "\x7f", "\x85", "\x9f"]


def body_of(name: str, **changes: Any) -> bytes:
    body = json.loads(encode_command(EXAMPLES[name]))
    body.update(changes)
    return json.dumps(body).encode()


def problems_of(data: bytes, **kwargs: Any) -> list[tuple[str, str]]:
    with pytest.raises(InvalidCommand) as caught:
        decode_command(data, today=TODAY, **kwargs)
    return [(p.path, p.message) for p in caught.value.problems]


@pytest.mark.parametrize(("name", "field"), IDENTIFIER_FIELDS)
@pytest.mark.parametrize("control", CONTROLS, ids=lambda c: f"U+{ord(c):04X}")
def test_control_characters_in_an_identifier_are_invalid(
    name: str, field: str, control: str
) -> None:
    # Given a valid command whose identifier holds a control character (inside or at the end)
    value = json.loads(encode_command(EXAMPLES[name]))[field]
    for bad in (value[:2] + control + value[2:], value + control):
        # When it is decoded
        problems = problems_of(body_of(name, **{field: bad}))
        # Then the only problem names that field
        assert [path for path, _ in problems] == [f"$.{field}"]


def test_the_identifier_problem_says_what_is_wrong_without_the_value() -> None:
    problems = problems_of(body_of("EnableCustomer", customer="ali\x00ce"))
    assert problems == [("$.customer", NO_CONTROL_RULE)]


def test_the_schema_states_the_control_character_rule() -> None:
    from contracts.schema import build_schemas

    schema = json.loads(build_schemas()["commands.schema.json"])
    customer = schema["$defs"]["EnableCustomer"]["properties"]["customer"]
    assert customer["pattern"] == "^[^\\x00-\\x1f\\x7f-\\x9f]*$"


def test_printable_unicode_identifiers_stay_valid() -> None:
    command = decode_command(body_of("EnableCustomer", customer="Zoë-客户"), today=TODAY)
    assert command.customer == "Zoë-客户"  # type: ignore[union-attr]


def test_a_body_one_byte_over_the_limit_is_rejected_before_decoding() -> None:
    # Given a body of exactly the limit plus one byte (not even JSON)
    data = b"x" * (MAX_BODY_BYTES + 1)
    # When it is decoded
    problems = problems_of(data)
    # Then the size is the one problem: nothing was parsed
    assert problems == [
        ("$", f"body has {MAX_BODY_BYTES + 1} bytes; at most {MAX_BODY_BYTES} are accepted")
    ]


def test_a_body_at_the_limit_is_decoded() -> None:
    data = body_of("EnableCustomer")
    padded = data[:-1] + b" " * (100 - len(data)) + b"}"
    assert len(padded) == 100
    assert decode_command(padded, today=TODAY, max_bytes=100).idempotency_key


def test_a_smaller_limit_applies_to_the_caller() -> None:
    problems = problems_of(body_of("EnableCustomer"), max_bytes=10)
    assert problems[0][1].endswith("at most 10 are accepted")


def test_a_rejection_lists_the_first_problems_and_counts_the_rest() -> None:
    # Given a CreateCustomer with 40,000 bad IP addresses
    data = body_of("CreateCustomer", ips=["not-an-ip"] * 40_000)
    # When it is decoded
    with pytest.raises(InvalidCommand) as caught:
        decode_command(data, today=TODAY)
    # Then every problem is kept for the caller, but the message names only the first ones
    assert len(caught.value.problems) == 40_000
    message = str(caught.value)
    assert message.count("must be a valid IPv4 or IPv6 address") == MAX_LISTED_PROBLEMS
    assert message.endswith(f"; and {40_000 - MAX_LISTED_PROBLEMS} more")
    assert len(message) < 2_000


def test_a_problem_naming_a_huge_unknown_field_is_shortened() -> None:
    # Given a command with an unknown field whose name is 100,000 characters long
    body = json.loads(body_of("EnableCustomer"))
    body["f" * 100_000] = 1
    # When it is decoded, Then the message stays short
    with pytest.raises(InvalidCommand) as caught:
        decode_command(json.dumps(body).encode(), today=TODAY)
    assert len(str(caught.value)) < 300
