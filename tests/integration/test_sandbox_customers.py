"""The sandbox's customer calls over real HTTP: success paths and each documented error."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from sandbox.server import SandboxServer
from tests.fixtures.sandbox import customer_form, reseller_url

REQUEST_TIMEOUT_S = 10.0


class Api:
    """Form POSTs to one sandbox, authenticated unless told otherwise."""

    def __init__(self, sandbox: SandboxServer) -> None:
        self.sandbox = sandbox
        self.session = requests.Session()

    def call(self, call: str, naming: str = "apiv2", **params: Any) -> requests.Response:
        base = self.sandbox.url if naming == "apiv2" else self.sandbox.distributor_url
        form = {"api_user": self.sandbox.api_user, "api_key": self.sandbox.api_key, **params}
        return self.session.post(
            reseller_url(base, call, naming), data=form, timeout=REQUEST_TIMEOUT_S
        )

    def add(self, username: str, **overrides: str) -> requests.Response:
        return self.call("add", **customer_form(username, **overrides))

    def customers(self, **filters: Any) -> list[dict[str, str]]:
        response = self.call("manage", method="profile", task="get", **filters)
        assert response.status_code == 200, response.text
        rows: list[dict[str, str]] = response.json()
        return rows


@pytest.fixture
def api(sandbox: SandboxServer) -> Iterator[Api]:
    client = Api(sandbox)
    yield client
    client.session.close()


def assert_rejected(response: requests.Response, *messages: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["message"] == "error"
    for message in messages:
        assert message in body["errors"], body


@pytest.mark.parametrize("naming", ["apiv2", "distributor"])
def test_add_then_list_shows_the_customer_in_the_documented_shape(api: Api, naming: str) -> None:
    # Given an empty sandbox
    # When a customer is added under either endpoint naming
    response = api.call("add", naming, **customer_form("ada@example.com"))
    # Then it succeeds and the listing shows it with string values and active "true"
    assert response.json() == {"message": "success"}
    listing = api.call("manage", naming, method="profile", task="get").json()
    assert listing == [
        {
            "id": "1",
            "username": "ada@example.com",
            "email": "ada@example.com",
            "active": "true",
            "first_name": "Ada",
            "last_name": "Lovelace",
            "address": "12 Any Street",
            "city": "London",
            "state": "LDN",
            "zip": "12345",
            "country": "GB",
            "phone": "555-0100",
            "website": "example.com",
            "company": "Analytical Engines",
        }
    ]


def test_add_accepts_the_optional_fields_and_keeps_them(api: Api, sandbox: SandboxServer) -> None:
    # Given the optional ip groups, ips, free_user and a billing date inside the cycle
    form = customer_form("opt@example.com", free_user="true")
    form_with_lists: dict[str, Any] = {
        **form,
        "ip_group[]": ["grp-a", "grp-b"],
        "ip[]": ["10.0.0.1"],
    }
    # When the customer is added
    response = api.call("add", **form_with_lists)
    # Then they are stored
    assert response.json() == {"message": "success"}
    customer = sandbox.state.find("opt@example.com")
    assert customer is not None
    assert (customer.ip_groups, customer.ips, customer.free_user) == (
        ["grp-a", "grp-b"],
        ["10.0.0.1"],
        True,
    )


def test_add_also_accepts_query_parameters_as_the_examples_show(
    api: Api, sandbox: SandboxServer
) -> None:
    # Given the parameters in the query string of a GET, as the documents' examples put them
    params = {
        "api_user": sandbox.api_user,
        "api_key": sandbox.api_key,
        **customer_form("q@example.com"),
    }
    # When it is sent
    response = requests.get(
        reseller_url(sandbox.url, "add"), params=params, timeout=REQUEST_TIMEOUT_S
    )
    # Then the customer exists
    assert response.json() == {"message": "success"}
    assert [c["username"] for c in api.customers()] == ["q@example.com"]


def test_duplicate_username_is_refused(api: Api) -> None:
    # Given an existing customer
    assert api.add("dup@example.com").status_code == 200
    # When the same username is added again
    response = api.add("dup@example.com")
    # Then the documented "already exists" error comes back
    assert_rejected(response, "Username already exists")


def test_deleted_username_cannot_be_registered_again(api: Api) -> None:
    # Given a customer that was deleted (the documents: the username stays reserved)
    api.add("gone@example.com")
    assert api.call("delete", user="gone@example.com").json() == {"message": "success"}
    # When it is added again
    response = api.add("gone@example.com")
    # Then it is refused, and the deleted customer is not listed
    assert_rejected(response, "Username already exists")
    assert api.customers() == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"password": "short", "confirm_password": "short"},
            "password must be at least 6 characters",
        ),
        ({"confirm_password": "other-pw"}, "confirm_password must match password"),
        ({"email": "not-an-email"}, "email must be in email format"),
        ({"first_name": "x" * 51}, "first_name must be no more than 50 characters"),
        ({"username": "u" * 65}, "username must be no more than 64 characters"),
        ({"username": "someone@sendgrid.com"}, "username cannot be in the sendgrid.com domain"),
        ({"free_user": "maybe"}, "free_user must be true or false"),
        ({"billing_date": "2020/01/01"}, "billing_date must be in YYYY-mm-dd format"),
        (
            {"billing_date": "2001-01-01"},
            "billing_date must be within one billing cycle from today",
        ),
        ({"company": ""}, "company is required"),
    ],
)
def test_add_validation_errors(api: Api, overrides: dict[str, str], message: str) -> None:
    # Given a form with one bad parameter
    # When it is sent
    form = {**customer_form("val@example.com"), **overrides}
    response = api.call("add", **form)
    # Then the documented validation error names it and nothing was created
    assert_rejected(response, message)
    assert api.customers() == []


def test_add_reports_every_missing_parameter_and_bad_ip(api: Api) -> None:
    # Given a form with only a username and an invalid ip
    # When it is sent
    response = api.call("add", username="bare@example.com", **{"ip[]": "999.1.1.1"})
    # Then each problem is listed
    assert_rejected(response, "password is required", "whitelabel is required")
    assert any("not a valid ip address" in e for e in response.json()["errors"])


def test_unknown_user_gets_the_documented_body(api: Api) -> None:
    # Given no customer called ghost
    # When any per-user call names it
    for call, params in [
        ("delete", {}),
        ("manage", {"method": "enable"}),
        ("manage", {"method": "profile", "task": "setEmail", "email": "a@b.co"}),
        (
            "credential",
            {"task": "add", "credential_name": "cred1", "credential_password": "secret-pw"},
        ),
        ("subuserManage", {"method": "apps", "task": "getavailable"}),
    ]:
        response = api.call(call, user="ghost@example.com", **params)
        # Then each answers 400 {"message": "User not found"}
        assert (response.status_code, response.json()) == (400, {"message": "User not found"}), call


def test_delete_removes_the_customer(api: Api, sandbox: SandboxServer) -> None:
    # Given a customer
    api.add("del@example.com")
    # When it is deleted
    response = api.call("delete", user="del@example.com")
    # Then it is gone
    assert response.json() == {"message": "success"}
    assert sandbox.state.find("del@example.com") is None


@pytest.mark.parametrize(
    ("method", "attribute", "value"),
    [
        ("disable", "active", False),
        ("enable", "active", True),
        ("website_disable", "website_access", False),
        ("website_enable", "website_access", True),
    ],
)
def test_enable_disable_and_website_access(
    api: Api, sandbox: SandboxServer, method: str, attribute: str, value: bool
) -> None:
    # Given a customer whose flag is the opposite of the target
    api.add("flag@example.com")
    customer = sandbox.state.find("flag@example.com")
    assert customer is not None
    setattr(customer, attribute, not value)
    # When the method is called
    response = api.call("manage", method=method, user="flag@example.com")
    # Then the flag is set
    assert response.json() == {"message": "success"}
    assert getattr(customer, attribute) is value


def test_password_reset_checks_length_and_confirmation(api: Api, sandbox: SandboxServer) -> None:
    # Given a customer
    api.add("pw@example.com")
    # When the password is reset with a mismatch, then with a valid pair
    mismatch = api.call(
        "manage",
        method="password",
        user="pw@example.com",
        password="new-secret",
        confirm_password="other",
    )
    ok = api.call(
        "manage",
        method="password",
        user="pw@example.com",
        password="new-secret",
        confirm_password="new-secret",
    )
    # Then the first is refused and the second changes the password
    assert_rejected(mismatch, "confirm_password must match password")
    assert ok.json() == {"message": "success"}
    assert sandbox.state.check_password("pw@example.com", "new-secret")


def test_profile_set_updates_only_the_given_fields(api: Api) -> None:
    # Given a customer
    api.add("prof@example.com")
    # When two fields are set, and one too long
    ok = api.call(
        "manage",
        method="profile",
        task="set",
        user="prof@example.com",
        first_name="Grace",
        city="Arlington",
    )
    too_long = api.call(
        "manage", method="profile", task="set", user="prof@example.com", zip="9" * 51
    )
    # Then the listing shows the change and the rest untouched
    assert ok.json() == {"message": "success"}
    assert_rejected(too_long, "zip must be no more than 50 characters")
    row = api.customers()[0]
    assert (row["first_name"], row["city"], row["last_name"], row["zip"]) == (
        "Grace",
        "Arlington",
        "Lovelace",
        "12345",
    )


def test_set_username_renames_and_refuses_a_taken_name(api: Api) -> None:
    # Given two customers
    api.add("old@example.com")
    api.add("other@example.com")
    # When one is renamed to a free name, then to the other's name
    renamed = api.call(
        "manage",
        method="profile",
        task="setUsername",
        user="old@example.com",
        username="new@example.com",
    )
    taken = api.call(
        "manage",
        method="profile",
        task="setUsername",
        user="new@example.com",
        username="other@example.com",
    )
    # Then the first succeeds and the second gets "already exists"
    assert renamed.json() == {"message": "success"}
    assert_rejected(taken, "Username already exists")
    assert sorted(c["username"] for c in api.customers()) == [
        "new@example.com",
        "other@example.com",
    ]


def test_set_email_uses_method_profile_and_validates(api: Api) -> None:
    # Given a customer
    api.add("mail@example.com")
    # When the email is changed as the example request does, then to garbage
    ok = api.call(
        "manage",
        method="profile",
        task="setEmail",
        user="mail@example.com",
        email="fresh@example.org",
    )
    bad = api.call(
        "manage", method="profile", task="setEmail", user="mail@example.com", email="nope"
    )
    # Then the first is applied and the second refused
    assert ok.json() == {"message": "success"}
    assert_rejected(bad, "email must be in email format")
    assert api.customers()[0]["email"] == "fresh@example.org"


def test_manage_without_a_known_method_or_task_is_a_validation_error(api: Api) -> None:
    # Given nothing
    # When manage is called without method, and with an unknown profile task
    no_method = api.call("manage", user="x@example.com")
    bad_task = api.call("manage", method="profile", task="explode")
    # Then both are documented validation errors
    assert no_method.status_code == 400 and no_method.json()["message"] == "error"
    assert bad_task.status_code == 400 and bad_task.json()["message"] == "error"


def test_list_filters_limit_and_offset(api: Api, sandbox: SandboxServer) -> None:
    # Given five customers, two in Paris and one of them disabled
    for n in range(5):
        api.add(f"c{n}@example.com", city="Paris" if n in (1, 3) else "Rome", company=f"co{n}")
    api.call("manage", method="disable", user="c3@example.com")
    # When listing with filters, limit and offset
    paris = api.customers(city="Paris")
    paris_active = api.customers(city="Paris", active="true")
    inactive = api.customers(active="false")
    by_id = api.customers(id="3")
    by_company = api.customers(company="co4")
    page = api.customers(limit=2, offset=1)
    # Then each shows exactly the matching rows in id order
    assert [c["username"] for c in paris] == ["c1@example.com", "c3@example.com"]
    assert [c["username"] for c in paris_active] == ["c1@example.com"]
    assert [(c["username"], c["active"]) for c in inactive] == [("c3@example.com", "false")]
    assert [c["username"] for c in by_id] == ["c2@example.com"]
    assert [c["username"] for c in by_company] == ["c4@example.com"]
    assert [c["username"] for c in page] == ["c1@example.com", "c2@example.com"]


def test_list_refuses_a_negative_limit(api: Api) -> None:
    # Given nothing
    # When limit is not a non-negative integer
    response = api.call("manage", method="profile", task="get", limit="-1")
    # Then it is a validation error
    assert_rejected(response, "limit must be a non-negative integer")
