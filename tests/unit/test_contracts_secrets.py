"""Secrets: visible on the command wire only, never in repr, str, logs, errors or events."""

from __future__ import annotations

import logging
import pickle

import msgspec
import pytest

from contracts import (
    AddCredential,
    CommandRejected,
    CreateCustomer,
    CustomerCreated,
    ErrorCode,
    ErrorInfo,
    InvalidCommand,
    Secret,
    decode_command,
    encode_command,
    encode_event,
    make_event,
)
from contracts.examples import example_commands

PASSWORD = "pa55-word-xyz"


def test_secret_hides_its_value_everywhere_but_reveal() -> None:
    # Given a secret
    secret = Secret(PASSWORD)
    # Then every textual form shows the placeholder only
    for text in (
        repr(secret),
        str(secret),
        f"{secret}",
        f"{secret!r}",
        f"{secret:>20}",
        "%s" % secret,  # noqa: UP031 - the logging style must hide it too
    ):
        assert PASSWORD not in text
    assert secret.reveal() == PASSWORD


def test_secret_equality_and_hash_follow_the_value() -> None:
    assert Secret("abcdef") == Secret("abcdef")
    assert Secret("abcdef") != Secret("abcdeg")
    assert Secret("abcdef") != "abcdef"
    assert len({Secret("abcdef"), Secret("abcdef"), Secret("zzzzzz")}) == 2


def test_secret_refuses_pickling_and_non_strings() -> None:
    with pytest.raises(TypeError):
        pickle.dumps(Secret(PASSWORD))
    with pytest.raises(TypeError):
        Secret(123456)  # type: ignore[arg-type]


def _commands_with_password() -> list[object]:
    examples = example_commands()
    create = examples["CreateCustomer"]
    assert isinstance(create, CreateCustomer)
    credential = examples["AddCredential"]
    assert isinstance(credential, AddCredential)
    return [
        msgspec.structs.replace(create, password=Secret(PASSWORD)),
        msgspec.structs.replace(credential, credential_password=Secret(PASSWORD)),
    ]


@pytest.mark.parametrize("command", _commands_with_password())
def test_commands_never_show_passwords_in_repr_str_or_logs(
    command: object, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a command holding a password
    # When it is rendered and logged every usual way
    logger = logging.getLogger("test.contracts.secrets")
    with caplog.at_level(logging.DEBUG, logger="test.contracts.secrets"):
        logger.info("command %s", command)
        logger.info("command %r", command)
        logger.info(f"command {command}")
        logger.info("command", extra={"command": command})
    # Then the password appears nowhere, while the command wire still carries it
    assert PASSWORD not in repr(command) and PASSWORD not in str(command)
    assert PASSWORD not in caplog.text
    assert all(PASSWORD not in str(r.__dict__) for r in caplog.records)
    assert PASSWORD.encode() in encode_command(command)  # type: ignore[arg-type]


def test_invalid_command_never_shows_the_password() -> None:
    # Given a command whose only problem is a too-long password, and another with bad siblings
    create = encode_command(_commands_with_password()[0]).replace(  # type: ignore[arg-type]
        PASSWORD.encode(), b"x" * 300
    )
    bad = encode_command(_commands_with_password()[1]).replace(  # type: ignore[arg-type]
        b'"smtp-relay"', b"12"
    )
    for data in (create, bad):
        # When decoded
        with pytest.raises(InvalidCommand) as caught:
            decode_command(data)
        # Then neither str nor repr of the error nor its problems show a password
        text = f"{caught.value} {caught.value!r} {caught.value.problems!r}"
        assert PASSWORD not in text and "x" * 300 not in text


def test_events_never_carry_secrets() -> None:
    # Given the events of a command with a password
    command = _commands_with_password()[0]
    succeeded = make_event(
        CustomerCreated,
        command_type="CreateCustomer",
        idempotency_key="k",
        customer="c",
        correlation_id=None,
        attempts=1,
    )
    rejected = make_event(
        CommandRejected,
        command_type="CreateCustomer",
        idempotency_key="k",
        customer="c",
        correlation_id=None,
        attempts=0,
        error=ErrorInfo(code=ErrorCode.INVALID_COMMAND, message=str(command)),
    )
    # Then their encodings never contain it
    for event in (succeeded, rejected):
        assert PASSWORD.encode() not in encode_event(event)


def test_encode_event_refuses_a_secret_smuggled_into_an_event() -> None:
    # Given an event whose payload was (wrongly) given a Secret
    event = make_event(
        CommandRejected,
        command_type="CreateCustomer",
        idempotency_key="k",
        customer="c",
        correlation_id=None,
        attempts=0,
        error=ErrorInfo(code=ErrorCode.INVALID_COMMAND, message="m", api_errors=[Secret(PASSWORD)]),  # type: ignore[list-item]
    )
    # Then encoding fails instead of leaking it
    with pytest.raises(TypeError, match="Secret"):
        encode_event(event)
