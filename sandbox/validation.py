"""The documented requirements of each parameter, as functions that collect problems.

Every check appends a message to ``problems`` rather than raising, so a request with several
bad parameters hears about all of them in one ``errors`` list, as the real API answers.
"""

from __future__ import annotations

import calendar
import datetime as dt
import ipaddress
import re

from sandbox.protocol import ApiError, Params
from sandbox.state import Customer, SandboxState

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PASSWORD_MIN_CHARS = 6
USERNAME_MAX_CHARS = 64
ADD_EMAIL_MAX_CHARS = 64
SET_EMAIL_MAX_CHARS = 100
CREDENTIAL_MIN_CHARS = 3
CREDENTIAL_MAX_CHARS = 64
IP_GROUP_MAX_CHARS = 255
FORBIDDEN_DOMAIN = "sendgrid.com"

# Documented maximum lengths of the customer fields.
MAX_CHARS = {
    "first_name": 50,
    "last_name": 50,
    "address": 100,
    "city": 100,
    "state": 100,
    "zip": 50,
    "country": 100,
    "phone": 50,
    "website": 255,
    "company": 255,
    "package": 255,
    "whitelabel": 255,
}


def raise_if(problems: list[str]) -> None:
    if problems:
        raise ApiError.rejected(*problems)


def required(params: Params, names: tuple[str, ...], problems: list[str]) -> dict[str, str]:
    """The named parameters' values; each missing or blank one is a problem."""
    values: dict[str, str] = {}
    for name in names:
        value = params.get(name)
        if value is None or value == "":
            problems.append(f"{name} is required")
        else:
            values[name] = value
    return values


def check_lengths(values: dict[str, str], problems: list[str]) -> None:
    for name, value in values.items():
        limit = MAX_CHARS.get(name)
        if limit is not None and len(value) > limit:
            problems.append(f"{name} must be no more than {limit} characters")


def check_username(username: str, problems: list[str], name: str = "username") -> None:
    if len(username) > USERNAME_MAX_CHARS:
        problems.append(f"{name} must be no more than {USERNAME_MAX_CHARS} characters")
    domain = username.rpartition("@")[2].lower() if "@" in username else ""
    if domain == FORBIDDEN_DOMAIN or domain.endswith("." + FORBIDDEN_DOMAIN):
        problems.append(f"{name} cannot be in the {FORBIDDEN_DOMAIN} domain")


def check_email(email: str, max_chars: int, problems: list[str]) -> None:
    if not EMAIL_RE.match(email):
        problems.append("email must be in email format")
    if len(email) > max_chars:
        problems.append(f"email must be no more than {max_chars} characters")


def check_password_pair(password: str | None, confirm: str | None, problems: list[str]) -> None:
    if password and len(password) < PASSWORD_MIN_CHARS:
        problems.append(f"password must be at least {PASSWORD_MIN_CHARS} characters")
    if password and confirm is not None and confirm != password:
        problems.append("confirm_password must match password")


def check_credential_name(name: str, problems: list[str]) -> None:
    if not CREDENTIAL_MIN_CHARS <= len(name) <= CREDENTIAL_MAX_CHARS:
        problems.append(
            f"credential_name must be between {CREDENTIAL_MIN_CHARS} and "
            f"{CREDENTIAL_MAX_CHARS} characters"
        )
    if name.isdigit():
        problems.append("credential_name cannot be completely numeric")


def check_credential_password(name: str, password: str, problems: list[str]) -> None:
    if len(password) < PASSWORD_MIN_CHARS:
        problems.append(f"{name} must be at least {PASSWORD_MIN_CHARS} characters")


def check_ips(ip_groups: list[str], ips: list[str], problems: list[str]) -> None:
    for group in ip_groups:
        if not group or len(group) > IP_GROUP_MAX_CHARS:
            problems.append(f"ip_group must be 1 to {IP_GROUP_MAX_CHARS} characters")
    for ip in ips:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            problems.append(f"ip {ip[:50]!r} is not a valid ip address")


def parse_free_user(raw: str | None, problems: list[str]) -> bool | None:
    if raw is None or raw == "":
        return None
    lowered = raw.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    problems.append("free_user must be true or false")
    return None


def one_month_after(day: dt.date) -> dt.date:
    year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
    return day.replace(
        year=year, month=month, day=min(day.day, calendar.monthrange(year, month)[1])
    )


def parse_billing_date(raw: str | None, problems: list[str]) -> str | None:
    """``YYYY-mm-dd``, within one billing cycle (one month) from today."""
    if raw is None or raw == "":
        return None
    try:
        day = dt.datetime.strptime(raw, "%Y-%m-%d").date()
    except ValueError:
        problems.append("billing_date must be in YYYY-mm-dd format")
        return None
    today = dt.datetime.now(dt.UTC).date()
    # One day of slack either side: the caller's "today" may be in another time zone.
    if not today - dt.timedelta(days=1) <= day <= one_month_after(today) + dt.timedelta(days=1):
        problems.append("billing_date must be within one billing cycle from today")
    return raw


def find_customer(state: SandboxState, params: Params) -> Customer:
    """The customer named by ``user``: a missing ``user`` is a validation error."""
    problems: list[str] = []
    user = required(params, ("user",), problems).get("user", "")
    raise_if(problems)
    customer = state.find(user)
    if customer is None:
        raise ApiError.user_not_found()
    return customer
