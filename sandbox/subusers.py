"""The subuser calls: ``reseller.credential`` (add/edit/delete) and ``reseller.subuserManage``
(apps: getavailable/activate/deactivate/setup/getsettings)."""

from __future__ import annotations

from collections.abc import Callable

from sandbox.protocol import (
    APP_NOT_FOUND,
    CREDENTIAL_EXISTS,
    CREDENTIAL_NOT_FOUND,
    ApiError,
    Params,
    Reply,
    success,
)
from sandbox.state import APP_CATALOGUE, AppState, Customer, SandboxState, password_digest
from sandbox.validation import (
    check_credential_name,
    check_credential_password,
    find_customer,
    raise_if,
    required,
)

# Parameters of a setup request that are not app settings.
RESERVED_SETUP_PARAMS = frozenset({"api_user", "api_key", "user", "method", "task", "name"})
APP_METHODS = ("apps", "app")  # the getsettings example says "app", the others "apps"


def credential(state: SandboxState, params: Params) -> Reply:
    task = params.get("task")
    if task not in ("add", "edit", "delete"):
        raise ApiError.rejected("task must be one of add, edit, delete")
    customer = find_customer(state, params)
    problems: list[str] = []
    password_name = {"add": "credential_password", "edit": "new_credential_password"}.get(task)
    names = ("credential_name",) if password_name is None else ("credential_name", password_name)
    values = required(params, names, problems)
    if "credential_name" in values:
        check_credential_name(values["credential_name"], problems)
    if password_name is not None and password_name in values:
        check_credential_password(password_name, values[password_name], problems)
    raise_if(problems)
    name = values["credential_name"]
    exists = name in customer.credentials
    if task == "add" and exists:
        raise ApiError.rejected(CREDENTIAL_EXISTS)
    if task != "add" and not exists:
        raise ApiError.rejected(CREDENTIAL_NOT_FOUND)
    if password_name is None:
        del customer.credentials[name]
    else:
        customer.credentials[name] = password_digest(values[password_name])
    entry = {"call": "credential", "task": task, "user": customer.username, "credential_name": name}
    state.commit(customer, entry)
    return success()


def find_app(customer: Customer, params: Params) -> tuple[str, AppState]:
    problems: list[str] = []
    name = required(params, ("name",), problems).get("name", "")
    raise_if(problems)
    app = customer.apps.get(name)
    if app is None:
        raise ApiError.rejected(APP_NOT_FOUND)
    return name, app


def list_apps(state: SandboxState, customer: Customer, params: Params) -> Reply:
    rows = [
        {
            "name": name,
            "title": title,
            "description": description,
            "activated": customer.apps[name].activated,
        }
        for name, (title, description) in APP_CATALOGUE.items()
    ]
    return Reply(200, rows)


def set_activation(activated: bool) -> Callable[[SandboxState, Customer, Params], Reply]:
    def handler(state: SandboxState, customer: Customer, params: Params) -> Reply:
        name, app = find_app(customer, params)
        app.activated = activated
        task = "activate" if activated else "deactivate"
        state.commit(
            customer,
            {"call": "subuserManage", "task": task, "user": customer.username, "app": name},
        )
        return success()

    return handler


def setup_app(state: SandboxState, customer: Customer, params: Params) -> Reply:
    name, app = find_app(customer, params)
    settings = {
        k: v
        for k in params.names()
        if k not in RESERVED_SETUP_PARAMS and (v := params.get(k)) is not None
    }
    if not settings:
        raise ApiError.rejected("at least one setting field (field_name=value) is required")
    app.settings.update(settings)
    entry = {
        "call": "subuserManage",
        "task": "setup",
        "user": customer.username,
        "app": name,
        "fields": sorted(settings),
    }
    state.commit(customer, entry)
    return success(settings=[dict(app.settings)])


def get_settings(state: SandboxState, customer: Customer, params: Params) -> Reply:
    _, app = find_app(customer, params)
    return Reply(200, {"settings": dict(app.settings)})


APP_TASKS: dict[str, Callable[[SandboxState, Customer, Params], Reply]] = {
    "getavailable": list_apps,
    "activate": set_activation(True),
    "deactivate": set_activation(False),
    "setup": setup_app,
    "getsettings": get_settings,
}


def subuser_manage(state: SandboxState, params: Params) -> Reply:
    if params.get("method") not in APP_METHODS:
        raise ApiError.rejected("method must be set to apps")
    handler = APP_TASKS.get(params.get("task") or "")
    if handler is None:
        raise ApiError.rejected(f"task must be one of {', '.join(APP_TASKS)}")
    return handler(state, find_customer(state, params), params)
