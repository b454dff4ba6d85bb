"""One handler per documented call: validate as documented, then change the state.

Handlers run under the state lock (the server holds it), so each call is atomic. The
dispatcher ``handle_call`` maps the call name of the URL to its handler.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter

from sandbox import subusers
from sandbox.protocol import USERNAME_EXISTS, ApiError, Params, Reply, success
from sandbox.state import (
    ACCOUNT_FIELDS,
    PROFILE_FIELDS,
    Customer,
    SandboxState,
    password_digest,
)
from sandbox.validation import (
    ADD_EMAIL_MAX_CHARS,
    SET_EMAIL_MAX_CHARS,
    check_email,
    check_ips,
    check_lengths,
    check_password_pair,
    check_username,
    find_customer,
    parse_billing_date,
    parse_free_user,
    raise_if,
    required,
)

ADD_REQUIRED = (
    "username",
    "password",
    "confirm_password",
    "email",
    *PROFILE_FIELDS,
    *ACCOUNT_FIELDS,
)
LIST_FILTERS = ("id", "username", "email", "active", *PROFILE_FIELDS)
BY_ID = attrgetter("id")
TRUE_WORDS = ("true", "1")
FALSE_WORDS = ("false", "0")


def add_customer(state: SandboxState, params: Params) -> Reply:
    problems: list[str] = []
    values = required(params, ADD_REQUIRED, problems)
    check_lengths(values, problems)
    check_username(values.get("username", ""), problems)
    if "email" in values:
        check_email(values["email"], ADD_EMAIL_MAX_CHARS, problems)
    check_password_pair(values.get("password"), values.get("confirm_password"), problems)
    ip_groups, ips = params.getlist("ip_group"), params.getlist("ip")
    check_ips(ip_groups, ips, problems)
    free_user = parse_free_user(params.get("free_user"), problems)
    billing_date = parse_billing_date(params.get("billing_date"), problems)
    raise_if(problems)
    if state.username_taken(values["username"]):
        raise ApiError.rejected(USERNAME_EXISTS)
    customer = state.new_customer(values["username"], values["email"], values["password"])
    customer.profile = {name: values[name] for name in (*PROFILE_FIELDS, *ACCOUNT_FIELDS)}
    customer.ip_groups, customer.ips = ip_groups, ips
    customer.free_user, customer.billing_date = free_user, billing_date
    state.commit(customer, {"call": "add", "task": None, "username": customer.username})
    return success()


def delete_customer(state: SandboxState, params: Params) -> Reply:
    customer = find_customer(state, params)
    state.commit(
        customer, {"call": "delete", "task": None, "user": customer.username}, deleted=True
    )
    return success()


def matches(customer: Customer, filters: dict[str, str]) -> bool:
    row = customer.listing_row() if set(filters) - {"active"} else {}
    for name, wanted in filters.items():
        if name == "active":
            if wanted.lower() not in (*TRUE_WORDS, *FALSE_WORDS):
                raise ApiError.rejected("active must be true or false")
            if customer.active != (wanted.lower() in TRUE_WORDS):
                return False
        elif row.get(name) != wanted:
            return False
    return True


def non_negative(params: Params, name: str, problems: list[str]) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit():
        problems.append(f"{name} must be a non-negative integer")
        return None
    return int(raw)


def list_customers(state: SandboxState, params: Params) -> Reply:
    problems: list[str] = []
    limit, offset = (
        non_negative(params, "limit", problems),
        non_negative(params, "offset", problems),
    )
    raise_if(problems)
    filters = {name: v for name in LIST_FILTERS if (v := params.get(name)) is not None and v != ""}
    ordered = sorted(state.customers.values(), key=BY_ID)
    selected = [c for c in ordered if matches(c, filters)] if filters else ordered
    start = offset or 0
    end = None if limit is None else start + limit
    # Rows only for the page: a soak lists with limit=1 among thousands of customers.
    return Reply(200, [c.listing_row() for c in selected[start:end]])


def set_flag(method: str) -> Callable[[SandboxState, Params], Reply]:
    attribute, value = {
        "enable": ("active", True),
        "disable": ("active", False),
        "website_enable": ("website_access", True),
        "website_disable": ("website_access", False),
    }[method]

    def handler(state: SandboxState, params: Params) -> Reply:
        customer = find_customer(state, params)
        setattr(customer, attribute, value)
        state.commit(customer, {"call": "manage", "task": method, "user": customer.username})
        return success()

    return handler


def reset_password(state: SandboxState, params: Params) -> Reply:
    customer = find_customer(state, params)
    problems: list[str] = []
    values = required(params, ("password", "confirm_password"), problems)
    check_password_pair(values.get("password"), values.get("confirm_password"), problems)
    raise_if(problems)
    customer.password_sha256 = password_digest(values["password"])
    state.commit(customer, {"call": "manage", "task": "password", "user": customer.username})
    return success()


def set_profile(state: SandboxState, params: Params) -> Reply:
    customer = find_customer(state, params)
    problems: list[str] = []
    values = {name: v for name in PROFILE_FIELDS if (v := params.get(name)) is not None}
    check_lengths(values, problems)
    raise_if(problems)
    customer.profile.update(values)
    entry = {"call": "manage", "task": "set", "user": customer.username, "fields": sorted(values)}
    state.commit(customer, entry)
    return success()


def set_username(state: SandboxState, params: Params) -> Reply:
    customer = find_customer(state, params)
    problems: list[str] = []
    new_username = required(params, ("username",), problems).get("username", "")
    check_username(new_username, problems)
    raise_if(problems)
    if new_username != customer.username and state.username_taken(new_username):
        raise ApiError.rejected(USERNAME_EXISTS)
    previous, customer.username = customer.username, new_username
    entry = {"call": "manage", "task": "setUsername", "user": previous, "username": new_username}
    state.commit(customer, entry, previous_username=previous)
    return success()


def set_email(state: SandboxState, params: Params) -> Reply:
    customer = find_customer(state, params)
    problems: list[str] = []
    email = required(params, ("email",), problems).get("email")
    if email is not None:
        check_email(email, SET_EMAIL_MAX_CHARS, problems)
    raise_if(problems)
    customer.email = email or customer.email
    state.commit(customer, {"call": "manage", "task": "setEmail", "user": customer.username})
    return success()


PROFILE_TASKS: dict[str, Callable[[SandboxState, Params], Reply]] = {
    "get": list_customers,
    "set": set_profile,
    "setUsername": set_username,
    "setEmail": set_email,
}
MANAGE_METHODS: dict[str, Callable[[SandboxState, Params], Reply]] = {
    "password": reset_password,
    **{m: set_flag(m) for m in ("enable", "disable", "website_enable", "website_disable")},
}


def manage(state: SandboxState, params: Params) -> Reply:
    method, task = params.get("method"), params.get("task")
    # The setEmail table says method=password while its example says profile: accept both.
    if method == "profile" or (method == "password" and task == "setEmail"):
        handler = PROFILE_TASKS.get(task or "")
        if handler is None:
            raise ApiError.rejected(f"task must be one of {', '.join(PROFILE_TASKS)}")
        return handler(state, params)
    handler = MANAGE_METHODS.get(method or "")
    if handler is None:
        raise ApiError.rejected(f"method must be one of profile, {', '.join(MANAGE_METHODS)}")
    return handler(state, params)


CALLS: dict[str, Callable[[SandboxState, Params], Reply]] = {
    "add": add_customer,
    "delete": delete_customer,
    "manage": manage,
    "credential": subusers.credential,
    "subuserManage": subusers.subuser_manage,
}


def handle_call(state: SandboxState, call: str, params: Params) -> Reply:
    """Run one documented call (the caller checked that ``call`` is in ``CALLS``)."""
    return CALLS[call](state, params)
