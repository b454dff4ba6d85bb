"""The sandbox's credential and app calls over real HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import requests

from sandbox.server import SandboxServer
from sandbox.state import APP_CATALOGUE, password_digest
from tests.fixtures.sandbox import customer_form, reseller_url

REQUEST_TIMEOUT_S = 10.0
USER = "sub@example.com"

Poster = Callable[..., requests.Response]


@pytest.fixture
def post(sandbox: SandboxServer) -> Iterator[Poster]:
    """``post(call, **params)`` as the customer USER, who exists."""
    session = requests.Session()
    auth = {"api_user": sandbox.api_user, "api_key": sandbox.api_key}

    def send(call: str, **params: str) -> requests.Response:
        form = {**auth, "user": USER, **params}
        return session.post(reseller_url(sandbox.url, call), data=form, timeout=REQUEST_TIMEOUT_S)

    created = session.post(reseller_url(sandbox.url, "add"), data={**auth, **customer_form(USER)})
    assert created.json() == {"message": "success"}
    yield send
    session.close()


def errors_of(response: requests.Response) -> list[str]:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["message"] == "error"
    errors: list[str] = body["errors"]
    return errors


def test_credential_add_edit_delete(post: Poster, sandbox: SandboxServer) -> None:
    # Given a customer without credentials
    # When a credential is added, its password changed, then deleted
    added = post(
        "credential", task="add", credential_name="smtp-1", credential_password="cred-secret"
    )
    customer = sandbox.state.find(USER)
    assert customer is not None
    stored_after_add = customer.credentials.get("smtp-1")
    edited = post(
        "credential", task="edit", credential_name="smtp-1", new_credential_password="cred-secret-2"
    )
    stored_after_edit = customer.credentials.get("smtp-1")
    deleted = post("credential", task="delete", credential_name="smtp-1")
    # Then each succeeds and the stored credential follows
    assert [r.json() for r in (added, edited, deleted)] == [{"message": "success"}] * 3
    assert stored_after_add == password_digest("cred-secret")
    assert stored_after_edit == password_digest("cred-secret-2")
    assert "smtp-1" not in customer.credentials


def test_credential_duplicate_and_unknown(post: Poster) -> None:
    # Given one credential
    post("credential", task="add", credential_name="smtp-1", credential_password="cred-secret")
    # When it is added again, and an unknown one is edited and deleted
    duplicate = post(
        "credential", task="add", credential_name="smtp-1", credential_password="cred-secret"
    )
    edit_unknown = post(
        "credential", task="edit", credential_name="nope", new_credential_password="cred-secret"
    )
    delete_unknown = post("credential", task="delete", credential_name="nope")
    # Then the documented bodies come back
    assert errors_of(duplicate) == ["Credential already exists"]
    assert errors_of(edit_unknown) == ["Credential not found"]
    assert errors_of(delete_unknown) == ["Credential not found"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"credential_name": "ab", "credential_password": "cred-secret"},
            "credential_name must be between 3 and 64 characters",
        ),
        (
            {"credential_name": "12345", "credential_password": "cred-secret"},
            "credential_name cannot be completely numeric",
        ),
        (
            {"credential_name": "smtp-1", "credential_password": "short"},
            "credential_password must be at least 6 characters",
        ),
        ({"credential_name": "smtp-1"}, "credential_password is required"),
    ],
)
def test_credential_add_validation(post: Poster, params: dict[str, str], message: str) -> None:
    # Given a bad credential parameter
    # When it is added
    response = post("credential", task="add", **params)
    # Then the validation error names it
    assert message in errors_of(response)


def test_credential_edit_takes_new_credential_password(post: Poster) -> None:
    # Given a credential
    post("credential", task="add", credential_name="smtp-1", credential_password="cred-secret")
    # When edit sends credential_password instead of the documented new_credential_password
    response = post(
        "credential", task="edit", credential_name="smtp-1", credential_password="cred-secret-2"
    )
    # Then the missing documented parameter is reported
    assert "new_credential_password is required" in errors_of(response)


def test_credential_unknown_task(post: Poster) -> None:
    # Given nothing
    # When the task is not add/edit/delete
    response = post("credential", task="rename", credential_name="smtp-1")
    # Then it is a validation error
    assert errors_of(response) == ["task must be one of add, edit, delete"]


def test_apps_list_activate_deactivate(post: Poster) -> None:
    # Given a customer with the fixed app catalogue
    # When newrelic is activated, clicktrack activated then deactivated
    activated = post("subuserManage", method="apps", task="activate", name="newrelic")
    post("subuserManage", method="apps", task="activate", name="clicktrack")
    deactivated = post("subuserManage", method="apps", task="deactivate", name="clicktrack")
    listing = post("subuserManage", method="apps", task="getavailable").json()
    # Then the listing has every app in the documented shape with the right flags
    assert activated.json() == deactivated.json() == {"message": "success"}
    assert [app["name"] for app in listing] == list(APP_CATALOGUE)
    flags = {app["name"]: app["activated"] for app in listing}
    assert flags["newrelic"] is True and flags["clicktrack"] is False and flags["gravatar"] is False
    assert set(listing[0]) == {"name", "title", "description", "activated"}


def test_app_setup_then_getsettings(post: Poster) -> None:
    # Given an app
    # When it is set up with plain form fields, then read back (the example's method=app)
    setup = post(
        "subuserManage",
        method="apps",
        task="setup",
        name="twitter",
        username="bird",
        interval="daily",
    )
    settings = post("subuserManage", method="app", task="getsettings", name="twitter")
    # Then the setup answers success with the settings, and getsettings returns them
    assert setup.json() == {
        "message": "success",
        "settings": [{"username": "bird", "interval": "daily"}],
    }
    assert settings.json() == {"settings": {"username": "bird", "interval": "daily"}}


def test_app_errors(post: Poster) -> None:
    # Given nothing
    # When an unknown app is activated, a setup has no fields, the name is missing
    unknown = post("subuserManage", method="apps", task="activate", name="teleport")
    empty_setup = post("subuserManage", method="apps", task="setup", name="twitter")
    no_name = post("subuserManage", method="apps", task="getsettings")
    bad_method = post("subuserManage", method="profile", task="getavailable")
    # Then each gets its documented error
    assert errors_of(unknown) == ["App not found"]
    assert "setting field" in errors_of(empty_setup)[0]
    assert errors_of(no_name) == ["name is required"]
    assert errors_of(bad_method) == ["method must be set to apps"]
