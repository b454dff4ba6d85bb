"""Resolving ambiguous outcomes: did the API apply a call whose answer we never got?

A read timeout or a reset after the request was sent leaves the effect unknown. Calls that
are naturally idempotent (enable, disable, profile set, activate, set a password ...) are
simply sent again. The others are resolved here, before they are sent again:

- ``check_applied`` reads the API's state and says whether the effect is already there;
- ``tolerate_after_ambiguity`` turns the error a repeated call gets when its first copy DID
  apply (``already_exists`` after a create, ``not_found`` after a delete) into the success
  it really is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from contracts.commands import (
    AddCredential,
    ChangeCredentialPassword,
    ChangeEmail,
    ChangeUsername,
    Command,
    CreateCustomer,
    DeleteCredential,
    DeleteCustomer,
)
from contracts.events import ErrorCode
from worker.errors import PermanentError
from worker.observability import traced

Client = Any  # worker.api.ResellerClient; kept loose so this module stays easy to test


def _customer_rows(client: Client, username: str) -> list[Any]:
    rows: list[Any] = client.list_customers(username=username)
    return [row for row in rows if row.username == username]


def _created(client: Client, cmd: CreateCustomer) -> bool:
    # Same username AND same email: a customer someone else created is not ours.
    return any(row.email == cmd.email for row in _customer_rows(client, cmd.username))


def _deleted(client: Client, cmd: DeleteCustomer) -> bool:
    return not _customer_rows(client, cmd.customer)


def _username_changed(client: Client, cmd: ChangeUsername) -> bool:
    return bool(_customer_rows(client, cmd.new_username)) and not _customer_rows(
        client, cmd.customer
    )


def _email_changed(client: Client, cmd: ChangeEmail) -> bool:
    return any(row.email == cmd.new_email for row in _customer_rows(client, cmd.customer))


_CHECKS: dict[type, Callable[[Client, Any], bool]] = {
    CreateCustomer: _created,
    DeleteCustomer: _deleted,
    ChangeUsername: _username_changed,
    ChangeEmail: _email_changed,
}


def needs_resolution(command: Command) -> bool:
    """True for calls that must not be blindly repeated after an ambiguous outcome."""
    return type(command) in _CHECKS or type(command) in (AddCredential, DeleteCredential)


def has_check(command: Command) -> bool:
    """True when the API's state can be read to tell whether the command is applied."""
    return type(command) in _CHECKS


@traced.internal("read-back")
def check_applied(client: Client, command: Command) -> bool:
    """Read back the API's state: True when the command's effect is already in place."""
    check = _CHECKS.get(type(command))
    return bool(check and check(client, command))


def tolerate_after_ambiguity(client: Client, command: Command, error: PermanentError) -> bool:
    """After an ambiguous first try, is this refusal of the repeat really a success?

    Returns True when the effect is now in place (possibly after a corrective call).
    """
    if isinstance(command, DeleteCredential):
        return error.code == ErrorCode.NOT_FOUND
    if isinstance(command, DeleteCustomer):
        return error.code == ErrorCode.CUSTOMER_NOT_FOUND
    if isinstance(command, AddCredential) and error.code == ErrorCode.ALREADY_EXISTS:
        # The credential exists, perhaps from our own lost first try: setting its password
        # to ours makes the end state exactly what the command asked for.
        client.execute(
            ChangeCredentialPassword(
                idempotency_key=command.idempotency_key,
                customer=command.customer,
                credential_name=command.credential_name,
                new_credential_password=command.credential_password,
            )
        )
        return True
    return False
