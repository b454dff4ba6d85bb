"""The soak's workload: a valid, mixed command sequence per customer, interleaved.

Each customer gets a CreateCustomer first, then a random mix of the commands a signup
system sends afterwards. The mix is chosen so that no command is a legitimate permanent
failure, whatever order the faults push it into: a command that finds its customer or
credential missing (because an earlier one is waiting on a delay tier) fails, is
dead-lettered, and succeeds when replayed. Hence no DeleteCustomer, ChangeUsername or
ChangeEmail (each changes what later commands or a create's read-back rely on), and a
deleted credential is one no other command touches.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from contracts import decode_command
from contracts.examples import create_customer_body

Command = dict[str, Any]

APPS = ("clicktrack", "opentrack", "footer", "bcc", "ganalytics", "spamcheck")
CREDENTIAL_PASSWORD = "cred-pass-0"  # a fixed sandbox-only test value
CUSTOMER_PASSWORD = "s3cret-pass"  # a fixed sandbox-only test value


@dataclass
class CustomerScript:
    """What has been generated for one customer so far, to keep its sequence valid."""

    username: str
    commands: list[Command] = field(default_factory=list)
    credentials: list[str] = field(default_factory=list)  # kept, may change password
    credential_serial: int = 0

    def key(self) -> str:
        return f"{self.username}-{len(self.commands):03d}"

    def next_credential(self, purpose: str) -> str:
        self.credential_serial += 1
        return f"{purpose}{self.credential_serial:03d}"


def create_customer(script: CustomerScript, _: random.Random) -> Command:
    # The key is added by the caller, like every other command of the script.
    body = create_customer_body(script.username, key="", password=CUSTOMER_PASSWORD)
    del body["idempotency_key"]
    return body


def on_customer(kind: str, **fields: Any) -> Callable[[CustomerScript, random.Random], Command]:
    def make(script: CustomerScript, _: random.Random) -> Command:
        return {"type": kind, "customer": script.username, **fields}

    return make


def update_profile(script: CustomerScript, rng: random.Random) -> Command:
    city = rng.choice(("Paris", "Oslo", "Lima", "Kyiv", "Quito"))
    return {"type": "UpdateCustomerProfile", "customer": script.username, "city": city}


def add_credential(script: CustomerScript, _: random.Random) -> Command:
    name = script.next_credential("smtp")
    script.credentials.append(name)
    return {
        "type": "AddCredential",
        "customer": script.username,
        "credential_name": name,
        "credential_password": CREDENTIAL_PASSWORD,
    }


def change_credential_password(script: CustomerScript, rng: random.Random) -> Command:
    if not script.credentials:
        return add_credential(script, rng)
    return {
        "type": "ChangeCredentialPassword",
        "customer": script.username,
        "credential_name": rng.choice(script.credentials),
        "new_credential_password": f"cred-pass-{rng.randrange(1000)}",
    }


def app_command(kind: str) -> Callable[[CustomerScript, random.Random], Command]:
    def make(script: CustomerScript, rng: random.Random) -> Command:
        command: Command = {"type": kind, "customer": script.username, "app": rng.choice(APPS)}
        if kind == "ConfigureApp":
            command["settings"] = {"field": f"value-{rng.randrange(1000)}"}
        return command

    return make


def reset_password(script: CustomerScript, rng: random.Random) -> Command:
    new_password = f"new-pass-{rng.randrange(1000)}"
    return {"type": "ResetPassword", "customer": script.username, "new_password": new_password}


# (weight, maker): the mix after the create. A short-lived credential is two commands.
FOLLOW_UPS: tuple[tuple[int, Callable[[CustomerScript, random.Random], Command]], ...] = (
    (14, update_profile),
    (14, add_credential),
    (10, change_credential_password),
    (10, app_command("ActivateApp")),
    (8, app_command("ConfigureApp")),
    (4, app_command("DeactivateApp")),
    (4, app_command("GetAppSettings")),
    (6, on_customer("EnableCustomer")),
    (6, on_customer("DisableCustomer")),
    (4, on_customer("EnableWebsiteAccess")),
    (4, on_customer("DisableWebsiteAccess")),
    (6, on_customer("ListApps")),
    (4, reset_password),
)
SHORT_LIVED_CREDENTIAL_WEIGHT = 6


def follow_up(script: CustomerScript, rng: random.Random) -> list[Command]:
    total = sum(w for w, _ in FOLLOW_UPS) + SHORT_LIVED_CREDENTIAL_WEIGHT
    pick = rng.randrange(total)
    for weight, make in FOLLOW_UPS:
        if pick < weight:
            return [make(script, rng)]
        pick -= weight
    name = script.next_credential("temp")
    base = {"customer": script.username, "credential_name": name}
    add = {"type": "AddCredential", **base, "credential_password": CREDENTIAL_PASSWORD}
    return [add, {"type": "DeleteCredential", **base}]


def customer_script(username: str, length: int, rng: random.Random) -> CustomerScript:
    script = CustomerScript(username)
    script.commands.append({"idempotency_key": script.key(), **create_customer(script, rng)})
    while len(script.commands) < length:
        for command in follow_up(script, rng):
            script.commands.append({"idempotency_key": script.key(), **command})
    del script.commands[length:]
    return script


def generate(commands: int, customers: int, seed: int, run_id: str) -> list[Command]:
    """``commands`` commands over ``customers`` customers, interleaved round-robin so the
    pool has many customers to run in parallel while each keeps its own order."""
    if customers < 1 or commands < customers:
        raise ValueError("need at least one customer and one command per customer")
    rng = random.Random(seed)
    base, extra = divmod(commands, customers)
    scripts = [
        customer_script(f"{run_id}-{i:05d}", base + (1 if i < extra else 0), rng)
        for i in range(customers)
    ]
    ordered: list[Command] = []
    for position in range(max(len(s.commands) for s in scripts)):
        ordered.extend(s.commands[position] for s in scripts if position < len(s.commands))
    return ordered


def check_valid(workload: list[Command]) -> None:
    """Every generated command must pass the worker's own validation."""
    import json

    for command in workload:
        decode_command(json.dumps(command).encode())
