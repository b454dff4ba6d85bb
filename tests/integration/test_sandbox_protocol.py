"""Authentication, routing and malformed input: always the documented JSON, never a traceback."""

from __future__ import annotations

import socket

import pytest
import requests

from sandbox import calls as sandbox_calls
from sandbox.server import SandboxServer
from tests.fixtures.sandbox import customer_form, reseller_url

REQUEST_TIMEOUT_S = 10.0
RAW_READ_BYTES = 65536


def assert_documented_error(response: requests.Response, status: int) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["message"] == "error" and isinstance(body["errors"], list)
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    ("api_user", "api_key"), [("sandbox", "wrong-key"), ("intruder", "sandbox-key"), ("", "")]
)
def test_wrong_credentials_get_401_and_change_nothing(
    sandbox: SandboxServer, api_user: str, api_key: str
) -> None:
    # Given wrong api_user / api_key
    form = {"api_user": api_user, "api_key": api_key, **customer_form("x@example.com")}
    # When a call is made
    response = requests.post(reseller_url(sandbox.url, "add"), data=form, timeout=REQUEST_TIMEOUT_S)
    # Then 401 with the documented body, and no customer was created
    assert response.status_code == 401
    assert response.json() == {"message": "error", "errors": ["Bad username / password"]}
    assert sandbox.state.customers == {}


def test_distributor_naming_reaches_the_same_state(sandbox: SandboxServer) -> None:
    # Given a customer created through the apiv2 naming
    auth = {"api_user": sandbox.api_user, "api_key": sandbox.api_key}
    requests.post(
        reseller_url(sandbox.url, "add"), data={**auth, **customer_form("both@example.com")}
    )
    # When it is listed through the distributor naming
    url = reseller_url(sandbox.distributor_url, "manage", naming="distributor")
    assert url.endswith("/api/distributor.manage.json")
    listing = requests.post(url, data={**auth, "method": "profile", "task": "get"}).json()
    # Then it is there
    assert [row["username"] for row in listing] == ["both@example.com"]


def test_xml_endpoint_answers_json_error(sandbox: SandboxServer) -> None:
    # Given an .xml endpoint
    url = f"{sandbox.url}reseller.add.xml"
    # When it is called
    response = requests.post(url, data={"api_user": "sandbox", "api_key": "sandbox-key"})
    # Then a 400 JSON error says only .json is supported
    assert_documented_error(response, 400)
    assert "only .json" in response.json()["errors"][0]


@pytest.mark.parametrize(
    "path", ["apiv2/reseller.explode.json", "apiv2/unknown", "api/reseller.add.json", "favicon.ico"]
)
def test_unknown_paths_get_404_json(sandbox: SandboxServer, path: str) -> None:
    # Given a path that is no documented call
    base = sandbox.url.removesuffix("apiv2/")
    # When it is requested
    response = requests.post(base + path, data={"api_user": "sandbox", "api_key": "sandbox-key"})
    # Then 404 with the error shape
    assert_documented_error(response, 404)


def test_garbage_body_is_a_validation_error_not_a_crash(sandbox: SandboxServer) -> None:
    # Given a body that is binary garbage, with valid credentials in the query string
    url = f"{reseller_url(sandbox.url, 'add')}?api_user=sandbox&api_key=sandbox-key"
    # When it is posted
    response = requests.post(url, data=b"\xff\xfe%%%&&==\x00\x01garbage", timeout=REQUEST_TIMEOUT_S)
    # Then a 400 lists the missing parameters
    assert_documented_error(response, 400)
    assert "username is required" in response.json()["errors"]


def test_bad_content_length_and_raw_garbage_request(sandbox: SandboxServer) -> None:
    # Given raw sockets speaking broken HTTP
    answers = []
    for raw in (
        b"POST /apiv2/reseller.add.json HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"\x16\x03\x01 not http at all\r\n\r\n",
        b"PUT /apiv2/reseller.add.json HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    ):
        with socket.create_connection(
            (sandbox.host, sandbox.port), timeout=REQUEST_TIMEOUT_S
        ) as conn:
            conn.sendall(raw)
            answers.append(conn.recv(RAW_READ_BYTES).decode("latin-1"))
    # When / Then each is answered with a 4xx/5xx JSON error body, no traceback
    for answer in answers:
        status = int(answer.split(" ", 2)[1])
        assert 400 <= status < 600, answer
        assert '"message": "error"' in answer and "Traceback" not in answer


def test_an_unexpected_handler_error_is_a_500_with_the_generic_body(
    sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a handler that crashes
    def explode(*_: object) -> None:
        raise RuntimeError("boom with secret-pw")

    monkeypatch.setitem(sandbox_calls.CALLS, "delete", explode)
    # When it is called
    response = requests.post(
        reseller_url(sandbox.url, "delete"),
        data={"api_user": "sandbox", "api_key": "sandbox-key", "user": "a"},
        timeout=REQUEST_TIMEOUT_S,
    )
    # Then the client sees only the documented generic 500
    assert response.status_code == 500
    assert response.json() == {"message": "error", "errors": ["internal error"]}


def test_keep_alive_connection_serves_many_requests(sandbox: SandboxServer) -> None:
    # Given one session (one keep-alive connection)
    session = requests.Session()
    url = reseller_url(sandbox.url, "manage")
    form = {"api_user": "sandbox", "api_key": "sandbox-key", "method": "profile", "task": "get"}
    # When many requests go over it
    statuses = {
        session.post(url, data=form, timeout=REQUEST_TIMEOUT_S).status_code for _ in range(20)
    }
    session.close()
    # Then every one is answered
    assert statuses == {200}
    assert sandbox.calls["manage/get"] == 20
