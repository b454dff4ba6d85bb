"""Resolving uncertain outcomes: did the API apply a call whose answer told us nothing?

An ambiguous answer (``worker.outcomes`` says which) or a crash mid-call leaves the effect
unknown. These functions only read, never write:

- ``is_applied`` reads the API's state and says whether the effect is already there, before
  the call is sent again;
- ``collision_is_ours`` says whether the refusal a repeated call met (``already_exists``
  after a create, ``not_found`` after a delete) is our own earlier attempt's effect. It is
  asked only after this key's own uncertain attempt; a read-back confirms it where the API
  can be read (a customer with our username AND our email), and for credentials, which the
  API cannot list, the refusal itself names our credential.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from contracts.commands import (
    ChangeEmail,
    ChangeUsername,
    Command,
    CreateCustomer,
    DeleteCustomer,
)
from worker.errors import PermanentError
from worker.observability import traced
from worker.outcomes import COLLISIONS

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


def has_read_back(command: Command) -> bool:
    """True when the API's state can be read to tell whether the command is applied."""
    return type(command) in _CHECKS


@traced.internal("read-back")
def is_applied(client: Client, command: Command) -> bool:
    """Read back the API's state: True when the command's effect is already in place."""
    check = _CHECKS.get(type(command))
    return bool(check and check(client, command))


def collision_is_ours(client: Client, command: Command, error: PermanentError) -> bool:
    """After this key's own uncertain attempt: is the repeat's refusal our earlier effect?"""
    if (type(command), error.code) not in COLLISIONS:
        return False
    if has_read_back(command):
        return is_applied(client, command)
    return True  # a credential: the API names ours in the refusal, and cannot be read
