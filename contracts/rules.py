"""The documented field requirements, declared once as annotated types.

Each alias below is used by the command Structs (``contracts.customer_commands`` and
``contracts.credential_app_commands``), so one declaration drives three things: the JSON
Schema, msgspec's typed decoding, and the field-by-field validation in
``contracts.validation`` that reports every problem at once. Requirements that a JSON
Schema keyword cannot express name a check in ``Meta.extra["checks"]`` (implemented in
``CHECKS`` below); ``Meta.extra["rule"]`` is the human message for a ``pattern``.

Numbers come from /work/shared/reseller-api/: customers-apiv2.txt (apiv2),
customers-v1-distributor.md and customers-v1-html.md (v1), credentials-apiv2.txt,
subuser-apps-apiv2.txt. Where those versions disagree the stricter rule wins and the
comment names the documents.
"""

from __future__ import annotations

import calendar
import ipaddress
import re
from collections.abc import Callable
from datetime import date
from typing import Annotated, Final

from msgspec import Meta

IDEMPOTENCY_KEY_MAX_LENGTH: Final = 255
USERNAME_MAX_LENGTH: Final = 64  # apiv2 + v1 reseller.add "No more than 64 characters"
EMAIL_MAX_LENGTH: Final = 64  # apiv2 + v1 reseller.add
NEW_EMAIL_MAX_LENGTH: Final = 100  # apiv2 + v1 setEmail "not more than 100 characters"
NAME_MAX_LENGTH: Final = 50  # first_name, last_name
PLACE_MAX_LENGTH: Final = 100  # address, city, state, country
SHORT_MAX_LENGTH: Final = 50  # zip, phone
LONG_MAX_LENGTH: Final = 255  # website, company, package, whitelabel, each ip_group
PASSWORD_MIN_LENGTH: Final = 6  # v1 "Must be at least 6 characters"; credentials-apiv2 too
# Not documented: a bound so a runaway value cannot reach the API or the store.
PASSWORD_MAX_LENGTH: Final = 255
CREDENTIAL_MIN_LENGTH: Final = 3  # credentials-apiv2: user and credential_name 3-64
CREDENTIAL_MAX_LENGTH: Final = 64
# Not documented (subuser-apps-apiv2 only says "name of the app"): our own bounds.
APP_NAME_MAX_LENGTH: Final = 255
SETTING_NAME_MAX_LENGTH: Final = 255
SETTING_VALUE_MAX_LENGTH: Final = 4096
IP_MAX_LENGTH: Final = 45  # the longest textual IPv6 address
# Not documented (apiv2 profile/get: "limit the number of results"): our own bounds.
LIST_LIMIT_MAX: Final = 10_000
LIST_OFFSET_MAX: Final = 2**31 - 1

EMAIL_PATTERN: Final = (
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)
_EMAIL_RE: Final = re.compile(EMAIL_PATTERN)
NOT_ALL_DIGITS_PATTERN: Final = r"\D"
# C0 controls, DEL and C1 controls: a NUL in a key or customer breaks PostgreSQL text, and
# none of them belongs in a name the API or an operator reads back.
CONTROL_CHARACTERS: Final = "\\x00-\\x1f\\x7f-\\x9f"
NO_CONTROL_PATTERN: Final = f"^[^{CONTROL_CHARACTERS}]*$"
_CONTROL_RE: Final = re.compile(f"[{CONTROL_CHARACTERS}]")
NO_CONTROL_RULE: Final = "must not contain control characters"
SENDGRID_DOMAIN: Final = "sendgrid.com"
# ConfigureApp settings travel as plain form fields next to these; a setting with one of
# these names would silently replace the call's own parameter.
RESERVED_SETTING_NAMES: Final = frozenset({"api_user", "api_key", "user", "name", "method", "task"})

Check = Callable[[object, date], str | None]


def _check_email(value: object, today: date) -> str | None:
    # fullmatch: the schema's pattern uses search semantics, where "$" accepts a final "\n".
    if isinstance(value, str) and not _EMAIL_RE.fullmatch(value):
        return "must be an email address (name@domain.tld)"
    return None


def has_control(text: str) -> bool:
    """True when ``text`` holds a C0 or C1 control character or DEL."""
    return _CONTROL_RE.search(text) is not None


def _check_no_control(value: object, today: date) -> str | None:
    # Beside the schema's pattern, whose "$" (search semantics) lets a final "\n" through.
    if isinstance(value, str) and has_control(value):
        return NO_CONTROL_RULE
    return None


def _check_ip(value: object, today: date) -> str | None:
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return "must be a valid IPv4 or IPv6 address"
    return None


def _check_not_sendgrid_domain(value: object, today: date) -> str | None:
    domain = str(value).rpartition("@")[2].strip().lower().rstrip(".")
    if domain == SENDGRID_DOMAIN or domain.endswith("." + SENDGRID_DOMAIN):
        return f"must not be in the {SENDGRID_DOMAIN} domain"
    return None


def latest_billing_date(signup: date) -> date:
    """One billing cycle after ``signup``: the same day next month, clamped to its end.

    apiv2/v1 reseller.add: "if they sign up on 2/28/11, then the latest date you can use is
    3/28/11"; a 1/31 signup therefore ends on the last day of February.
    """
    year, month = (signup.year + 1, 1) if signup.month == 12 else (signup.year, signup.month + 1)
    last_day = calendar.monthrange(year, month)[1]
    return date(year, month, min(signup.day, last_day))


def _check_billing_window(value: object, today: date) -> str | None:
    if not isinstance(value, date):
        return None
    if value < today:
        return "must not be before today (UTC)"
    if value > latest_billing_date(today):
        return "must be within one billing cycle (one month) from today (UTC)"
    return None


def _check_setting_name(value: object, today: date) -> str | None:
    if value in RESERVED_SETTING_NAMES:
        return "must not be one of the call's own parameters: " + ", ".join(
            sorted(RESERVED_SETTING_NAMES)
        )
    return None


CHECKS: Final[dict[str, Check]] = {
    "email": _check_email,
    "no_control": _check_no_control,
    "ip": _check_ip,
    "not_sendgrid_domain": _check_not_sendgrid_domain,
    "billing_window": _check_billing_window,
    "setting_name": _check_setting_name,
}


def _text(max_length: int, description: str, *, min_length: int = 1) -> Meta:
    return Meta(min_length=min_length, max_length=max_length, description=description)


def _identifier(max_length: int, description: str) -> Meta:
    """A name the store keys on or the API looks up: no control characters."""
    return Meta(
        min_length=1,
        max_length=max_length,
        pattern=NO_CONTROL_PATTERN,
        description=description,
        extra={"rule": NO_CONTROL_RULE, "checks": ("no_control",)},
    )


IdempotencyKey = Annotated[
    str,
    _identifier(IDEMPOTENCY_KEY_MAX_LENGTH, "Unique per intended operation; replays are no-ops."),
]
Username = Annotated[str, _identifier(USERNAME_MAX_LENGTH, "The customer's username.")]
# apiv2 names no format for `user`; the v1 distributor document's "Must be in email format"
# for enable/disable contradicts the credentials document's own example
# (user=reseller_customer) and reseller.add, which accepts any username: not enforced.
CustomerRef = Annotated[str, _identifier(USERNAME_MAX_LENGTH, "An existing customer's username.")]
# credentials-apiv2: "between 3 and 64 characters and cannot be completely numeric".
CredentialUser = Annotated[
    str,
    Meta(
        min_length=CREDENTIAL_MIN_LENGTH,
        max_length=CREDENTIAL_MAX_LENGTH,
        pattern=NOT_ALL_DIGITS_PATTERN,
        description="An existing customer's username (3-64 characters, not all digits).",
        extra={"rule": "must not be all digits", "checks": ("no_control",)},
    ),
]
CredentialName = Annotated[
    str,
    Meta(
        min_length=CREDENTIAL_MIN_LENGTH,
        max_length=CREDENTIAL_MAX_LENGTH,
        pattern=NOT_ALL_DIGITS_PATTERN,
        description="Credential name (3-64 characters, not all digits).",
        extra={"rule": "must not be all digits", "checks": ("no_control",)},
    ),
]


def _email(max_length: int, description: str, *, checks: tuple[str, ...] = ()) -> Meta:
    return Meta(
        min_length=1,
        max_length=max_length,
        pattern=EMAIL_PATTERN,
        description=description,
        extra={"rule": "must be an email address (name@domain.tld)", "checks": ("email", *checks)},
    )


Email = Annotated[str, _email(EMAIL_MAX_LENGTH, "The customer's contact email.")]
NewEmail = Annotated[str, _email(NEW_EMAIL_MAX_LENGTH, "The new contact email.")]
# New username: apiv2 setUsername says "No more than 64 characters ... cannot contain
# SendGrid.com in the domain name"; v1 html says "Must be in email format, not more than 100
# characters". Stricter of both: an email address of at most 64 characters.
NewUsername = Annotated[
    str,
    _email(
        USERNAME_MAX_LENGTH,
        "The new username: an email address outside the sendgrid.com domain.",
        checks=("not_sendgrid_domain",),
    ),
]
PersonName = Annotated[str, _text(NAME_MAX_LENGTH, "At most 50 characters.")]
PlaceText = Annotated[str, _text(PLACE_MAX_LENGTH, "At most 100 characters.")]
ShortText = Annotated[str, _text(SHORT_MAX_LENGTH, "At most 50 characters.")]
LongText = Annotated[str, _text(LONG_MAX_LENGTH, "At most 255 characters.")]
IpGroup = Annotated[str, _text(LONG_MAX_LENGTH, "An IP group name you own.")]
IpAddress = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=IP_MAX_LENGTH,
        description="An IPv4 or IPv6 address you own.",
        extra={"checks": ("ip",)},
    ),
]
BillingDate = Annotated[
    date,
    Meta(
        description="YYYY-mm-dd, from today (UTC) to one billing cycle (a month) later.",
        extra={"checks": ("billing_window",)},
    ),
]
AppName = Annotated[str, _identifier(APP_NAME_MAX_LENGTH, "An app name from ListApps.")]
SettingName = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=SETTING_NAME_MAX_LENGTH,
        description="A setting field name of the app.",
        extra={"checks": ("setting_name",)},
    ),
]
SettingValue = Annotated[str, _text(SETTING_VALUE_MAX_LENGTH, "A setting value.", min_length=0)]
AppSettings = Annotated[
    dict[SettingName, SettingValue], Meta(min_length=1, description="At least one setting.")
]
ListLimit = Annotated[int, Meta(ge=1, le=LIST_LIMIT_MAX, description="Maximum rows returned.")]
ListOffset = Annotated[int, Meta(ge=0, le=LIST_OFFSET_MAX, description="First row returned.")]
