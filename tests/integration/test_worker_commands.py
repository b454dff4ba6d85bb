"""Every command type end to end: real broker, real worker process, real sandbox over HTTP."""

from __future__ import annotations

import pytest

from contracts import SUCCESS_EVENTS
from tests.integration.harness import WorkerRig, customer_command

CUSTOMER = "ada"


def _commands() -> list[dict]:
    c = {"customer": CUSTOMER}
    return [
        customer_command(CUSTOMER, key="k-create"),
        {"type": "ListCustomers", "idempotency_key": "k-list", "username": CUSTOMER},
        {"type": "DisableCustomer", "idempotency_key": "k-disable", **c},
        {"type": "EnableCustomer", "idempotency_key": "k-enable", **c},
        {"type": "DisableWebsiteAccess", "idempotency_key": "k-wdis", **c},
        {"type": "EnableWebsiteAccess", "idempotency_key": "k-wen", **c},
        {"type": "UpdateCustomerProfile", "idempotency_key": "k-prof", "city": "Paris", **c},
        {"type": "ResetPassword", "idempotency_key": "k-pw", "new_password": "n3w-pass", **c},
        {"type": "ChangeEmail", "idempotency_key": "k-mail", "new_email": "ada@new.example", **c},
        {
            "type": "AddCredential",
            "idempotency_key": "k-cred",
            "credential_name": "smtp-ada",
            "credential_password": "cred-pass-1",
            **c,
        },
        {
            "type": "ChangeCredentialPassword",
            "idempotency_key": "k-cred-pw",
            "credential_name": "smtp-ada",
            "new_credential_password": "cred-pass-2",
            **c,
        },
        {
            "type": "DeleteCredential",
            "idempotency_key": "k-cred-del",
            "credential_name": "smtp-ada",
            **c,
        },
        {"type": "ListApps", "idempotency_key": "k-apps", **c},
        {"type": "ActivateApp", "idempotency_key": "k-act", "app": "clicktrack", **c},
        {
            "type": "ConfigureApp",
            "idempotency_key": "k-conf",
            "app": "clicktrack",
            "settings": {"enable_text": "1"},
            **c,
        },
        {"type": "GetAppSettings", "idempotency_key": "k-getconf", "app": "clicktrack", **c},
        {"type": "DeactivateApp", "idempotency_key": "k-deact", "app": "clicktrack", **c},
        {
            "type": "ChangeUsername",
            "idempotency_key": "k-rename",
            "new_username": "ada2@example.com",
            **c,
        },
        {"type": "DeleteCustomer", "idempotency_key": "k-delete", "customer": "ada2@example.com"},
    ]


# The success event of each command type, as the contracts define it (its own tests pin
# that table to DESIGN.md).
EXPECTED = {name: event.__name__ for name, event in SUCCESS_EVENTS.items()}


@pytest.mark.integration
def test_every_command_type_succeeds_with_its_event(rig: WorkerRig) -> None:
    # Given a running worker
    rig.start_worker()
    commands = _commands()
    assert {c["type"] for c in commands} == set(EXPECTED)
    # When the whole life of one customer is published, one command at a time
    for command in commands:
        rig.publish(command, correlation_id=f"corr-{command['idempotency_key']}")
        (event,) = rig.wait_events(1, idempotency_key=command["idempotency_key"])
        # Then each ends in its own success event, routed <CommandType>.succeeded
        assert event["type"] == EXPECTED[command["type"]], event
        assert event["_routing_key"] == f"{command['type']}.succeeded"
        assert event["correlation_id"] == f"corr-{command['idempotency_key']}"
        assert event["command_type"] == command["type"]
    by_key = {e["idempotency_key"]: e for e in rig.events}
    assert [c["username"] for c in by_key["k-list"]["customers"]] == [CUSTOMER]
    assert any(a["name"] == "clicktrack" for a in by_key["k-apps"]["apps"])
    assert by_key["k-getconf"]["settings"] == {"enable_text": "1"}
    # And no event anywhere carries a password
    raw = repr(rig.events)
    for secret in ("s3cret-pass", "n3w-pass", "cred-pass-1", "cred-pass-2", rig.sandbox.api_key):
        assert secret not in raw
