"""The table: which endpoint each command calls and how its fields become form parameters.

One row per command type (keyed by the class name, the command's wire tag), so dispatching a
command is a lookup, and adding a call is adding a row. The documents contradict themselves in
places; the rows follow their example requests (setEmail uses ``method=profile``, getsettings
uses ``method=app``).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from contracts.commands import PROFILE_FIELDS


class Payload(Enum):
    """What a successful response carries, so classification knows how to type it."""

    NONE = "none"
    CUSTOMERS = "customers"
    APPS = "apps"
    SETTINGS = "settings"


class Revealable(Protocol):
    def reveal(self) -> str: ...


@dataclass(frozen=True)
class CallSpec:
    """How one command type becomes one POST.

    ``fields`` maps a command field to its form parameter (a list field is sent as repeated
    ``param`` entries, so list params carry their ``[]``). ``confirm`` names the field whose
    value is also sent as ``confirm_password``. ``spread`` names a ``dict`` field sent as plain
    ``key=value`` form fields.
    """

    call: str
    fixed: tuple[tuple[str, str], ...]
    fields: tuple[tuple[str, str], ...]
    payload: Payload = Payload.NONE
    confirm: str | None = None
    spread: str | None = None

    @property
    def label(self) -> str:
        """Low-cardinality name of the call for logs and metrics, e.g. ``manage.profile.get``."""
        return ".".join([self.call, *(value for _, value in self.fixed)])


USER = ("customer", "user")
LIST_FILTERS = ("id", "username", "email", "active", *PROFILE_FIELDS)
CREATE_FIELDS = (
    "username",
    "password",
    "email",
    *PROFILE_FIELDS,
    "package",
    "whitelabel",
)


def _same(*names: str) -> tuple[tuple[str, str], ...]:
    return tuple((name, name) for name in names)


def _manage(*fixed: tuple[str, str], fields: tuple[tuple[str, str], ...] = (USER,)) -> CallSpec:
    return CallSpec("manage", fixed, fields)


def _apps(task: str, *, method: str = "apps", **kwargs: Any) -> CallSpec:
    fields = (USER, ("app", "name")) if task != "getavailable" else (USER,)
    return CallSpec("subuserManage", (("method", method), ("task", task)), fields, **kwargs)


def _credential(task: str, *secret_fields: str) -> CallSpec:
    fields = (USER, ("credential_name", "credential_name"), *_same(*secret_fields))
    return CallSpec("credential", (("task", task),), fields)


CALLS: dict[str, CallSpec] = {
    "CreateCustomer": CallSpec(
        "add",
        (),
        (
            *_same(*CREATE_FIELDS),
            ("ip_groups", "ip_group[]"),
            ("ips", "ip[]"),
            *_same("free_user", "billing_date"),
        ),
        confirm="password",
    ),
    "DeleteCustomer": CallSpec("delete", (), (USER,)),
    "ListCustomers": CallSpec(
        "manage",
        (("method", "profile"), ("task", "get")),
        _same(*LIST_FILTERS, "limit", "offset"),
        payload=Payload.CUSTOMERS,
    ),
    "EnableCustomer": _manage(("method", "enable")),
    "DisableCustomer": _manage(("method", "disable")),
    "EnableWebsiteAccess": _manage(("method", "website_enable")),
    "DisableWebsiteAccess": _manage(("method", "website_disable")),
    "UpdateCustomerProfile": _manage(
        ("method", "profile"), ("task", "set"), fields=(USER, *_same(*PROFILE_FIELDS))
    ),
    "ResetPassword": CallSpec(
        "manage",
        (("method", "password"),),
        (USER, ("new_password", "password")),
        confirm="new_password",
    ),
    "ChangeUsername": _manage(
        ("method", "profile"), ("task", "setUsername"), fields=(USER, ("new_username", "username"))
    ),
    "ChangeEmail": _manage(
        ("method", "profile"), ("task", "setEmail"), fields=(USER, ("new_email", "email"))
    ),
    "AddCredential": _credential("add", "credential_password"),
    "ChangeCredentialPassword": _credential("edit", "new_credential_password"),
    "DeleteCredential": _credential("delete"),
    "ListApps": _apps("getavailable", payload=Payload.APPS),
    "ActivateApp": _apps("activate"),
    "DeactivateApp": _apps("deactivate"),
    "ConfigureApp": _apps("setup", spread="settings"),
    "GetAppSettings": _apps("getsettings", method="app", payload=Payload.SETTINGS),
}

PASSWORD_FIELDS = frozenset(
    {"password", "new_password", "credential_password", "new_credential_password"}
)

# Parameters a spread dict (ConfigureApp's settings) may not override.
RESERVED_PARAMS = frozenset({"api_user", "api_key", "user", "name", "method", "task"})


def encode_value(value: object) -> str:
    """One form value: secrets revealed, booleans ``true``/``false``, dates ``YYYY-mm-dd``."""
    if hasattr(value, "reveal"):
        revealed: str = value.reveal()
        return revealed
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime.date):
        return value.strftime("%Y-%m-%d")
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


def secret_values(spec: CallSpec, values: Mapping[str, object]) -> tuple[str, ...]:
    """Every password this call would send (to scrub it from any echoed API text), whether
    it came wrapped in a ``Secret`` or as a plain str."""
    found = (values.get(name) for name, _ in spec.fields if name in PASSWORD_FIELDS)
    return tuple(encode_value(value) for value in found if value)


def build_params(spec: CallSpec, values: Mapping[str, object]) -> list[tuple[str, str]]:
    """The call's form params (credentials excluded), in the documented order.

    ``None`` means "not given" and is left out, as is an empty list.
    """
    params: list[tuple[str, str]] = list(spec.fixed)
    for name, param in spec.fields:
        value = values.get(name)
        if value is None:
            continue
        if isinstance(value, list | tuple):
            params.extend((param, encode_value(item)) for item in value)
        else:
            params.append((param, encode_value(value)))
        if name == spec.confirm:
            params.append(("confirm_password", encode_value(value)))
    if spec.spread is not None:
        params.extend(_spread(values.get(spec.spread)))
    return params


def _spread(settings: object) -> Iterable[tuple[str, str]]:
    if not isinstance(settings, Mapping):
        return []
    reserved = sorted(RESERVED_PARAMS.intersection(settings))
    if reserved:
        raise ValueError(f"setting names {reserved} are reserved API parameters")
    return [(str(key), encode_value(value)) for key, value in settings.items()]


def command_values(spec: CallSpec, command: object) -> dict[str, object]:
    """The fields a row reads, taken from a command Struct (absent ones count as not given)."""
    names = [name for name, _ in spec.fields]
    if spec.spread is not None:
        names.append(spec.spread)
    return {name: getattr(command, name, None) for name in names}
