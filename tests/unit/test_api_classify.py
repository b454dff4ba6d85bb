"""Response classification against raw bodies: every row of the API's error vocabulary."""

from __future__ import annotations

import datetime
import json
from http.client import IncompleteRead, RemoteDisconnected
from typing import Any

import pytest
from urllib3 import HTTPHeaderDict
from urllib3.exceptions import (
    ConnectTimeoutError,
    DecodeError,
    LocationParseError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
    SSLError,
)

from contracts.events import App, Customer, ErrorCode
from worker.api.calls import CALLS, Payload, build_params
from worker.api.classify import classify_exception, classify_response, parse_retry_after
from worker.errors import AmbiguousError, PermanentError, TransientError

LABEL = "manage.enable"


def classify(
    status: int,
    body: Any,
    payload: Payload = Payload.NONE,
    headers: dict[str, str] | None = None,
    secrets: tuple[str, ...] = (),
) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return classify_response(LABEL, status, headers or {}, raw, payload, secrets)


def errors(*messages: str) -> dict[str, Any]:
    return {"message": "error", "errors": list(messages)}


# --- permanent rows ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (401, errors("Bad username / password"), ErrorCode.AUTH_FAILED),
        (400, {"message": "User not found"}, ErrorCode.CUSTOMER_NOT_FOUND),
        (400, {"message": "user NOT found"}, ErrorCode.CUSTOMER_NOT_FOUND),
        (400, errors("Username already exists"), ErrorCode.ALREADY_EXISTS),
        (400, errors("Credential already exists"), ErrorCode.ALREADY_EXISTS),
        (400, errors("Credential not found"), ErrorCode.NOT_FOUND),
        (400, errors("App not found"), ErrorCode.NOT_FOUND),
        (400, errors("password must be at least 6 characters"), ErrorCode.API_REJECTED),
        (400, errors("Missing parameter: user"), ErrorCode.API_REJECTED),
        (400, errors(), ErrorCode.API_REJECTED),
        (400, {"message": "error"}, ErrorCode.API_REJECTED),
    ],
)
def test_documented_error_bodies_are_permanent_with_their_code(
    status: int, body: dict[str, Any], code: ErrorCode
) -> None:
    # Given a documented error body; When it is classified; Then it is permanent with its code
    with pytest.raises(PermanentError) as caught:
        classify(status, body)
    assert caught.value.code is code
    assert LABEL in str(caught.value)


def test_api_error_strings_are_kept_and_the_most_specific_code_wins() -> None:
    # Given a refusal mixing a validation error with a duplicate
    body = errors("email is invalid", "Username already exists")
    # When it is classified
    with pytest.raises(PermanentError) as caught:
        classify(400, body)
    # Then the duplicate decides the code and every API string is kept, in order
    assert caught.value.code is ErrorCode.ALREADY_EXISTS
    assert caught.value.api_errors == ("email is invalid", "Username already exists")
    assert "email is invalid" in str(caught.value)


def test_a_flood_of_api_error_strings_is_bounded() -> None:
    # Given a refusal listing 50 long errors
    body = errors(*[f"field {n} is invalid: " + "x" * 1000 for n in range(50)])
    # When it is classified
    with pytest.raises(PermanentError) as caught:
        classify(400, body)
    # Then the first ten are kept, each cut short, and the rest counted
    kept = caught.value.api_errors
    assert len(kept) == 11 and kept[-1] == "and 40 more"
    assert all(len(error) <= 300 for error in kept)
    assert len(str(caught.value)) < 4000


def test_error_strings_match_case_insensitively() -> None:
    # Given the API shouting its errors
    # When / Then the meaning is the same
    with pytest.raises(PermanentError) as caught:
        classify(401, errors("BAD USERNAME / PASSWORD"))
    assert caught.value.code is ErrorCode.AUTH_FAILED


# --- body first, status second ---------------------------------------------------------------


def test_a_200_with_an_error_body_is_an_error() -> None:
    # Given a 200 whose body says error; When classified; Then the body wins
    with pytest.raises(PermanentError) as caught:
        classify(200, errors("Username already exists"))
    assert caught.value.code is ErrorCode.ALREADY_EXISTS


def test_a_200_user_not_found_is_customer_not_found() -> None:
    with pytest.raises(PermanentError) as caught:
        classify(200, {"message": "User not found"})
    assert caught.value.code is ErrorCode.CUSTOMER_NOT_FOUND


def test_a_4xx_with_a_success_body_is_not_trusted_as_success() -> None:
    # Given a status that contradicts a success body; Then it is ambiguous, not a success
    with pytest.raises(AmbiguousError):
        classify(400, {"message": "success"})


@pytest.mark.parametrize("status", [500, 502, 503, 504])
@pytest.mark.parametrize(
    "body", [b"<html>bad gateway</html>", b"", errors("Username already exists")]
)
def test_5xx_is_ambiguous_whatever_the_body(status: int, body: Any) -> None:
    # Given a server error, even one with a documented error body
    # When classified; Then it is ambiguous (a gateway may stand in front of an API that
    # applied the call; the status of a 5xx outranks its body)
    with pytest.raises(AmbiguousError) as caught:
        classify(status, body)
    assert str(status) in str(caught.value)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, b"<html>maintenance</html>"),
        (200, b""),
        (200, b'{"message": "succ'),
        (200, {"unexpected": "shape"}),
        (200, ["a", "list"]),
        (200, {"message": "Something unheard of"}),
        (200, {"message": "error", "errors": "not a list"}),
        (400, b"Bad Request"),
        (404, b"<html>Not Found</html>"),
        (401, {"detail": "unauthorized"}),
        (302, b""),
    ],
)
def test_bodies_that_are_not_the_documented_json_are_ambiguous(status: int, body: Any) -> None:
    # Given a body outside the vocabulary; When classified
    # Then it is ambiguous: it does not prove that nothing was applied
    with pytest.raises(AmbiguousError) as caught:
        classify(status, body)
    assert "not the documented JSON" in str(caught.value)


# --- 429 and Retry-After -------------------------------------------------------------------------


def test_429_is_transient_with_the_retry_after_delay() -> None:
    # Given a rate-limit answer with Retry-After seconds
    # When classified
    with pytest.raises(TransientError) as caught:
        classify(429, errors("Too many requests"), headers={"Retry-After": "7"})
    # Then it is transient and carries the delay and the API's text
    assert caught.value.retry_after_s == 7.0
    assert caught.value.api_errors == ("Too many requests",)


def test_429_without_retry_after_is_transient_without_a_delay() -> None:
    with pytest.raises(TransientError) as caught:
        classify(429, b"slow down")
    assert caught.value.retry_after_s is None


def test_429_reads_the_header_case_insensitively() -> None:
    # Given the real response header mapping, which is case-insensitive
    headers = HTTPHeaderDict({"retry-after": "3"})
    with pytest.raises(TransientError) as caught:
        classify_response(LABEL, 429, headers, b"{}", Payload.NONE)
    assert caught.value.retry_after_s == 3.0


NOW = datetime.datetime(2026, 11, 23, 9, 0, 0, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("0", 0.0),
        (" 5 ", 5.0),
        ("1.5", 1.5),
        ("Mon, 23 Nov 2026 09:00:30 GMT", 30.0),
        ("Mon, 23 Nov 2026 08:59:00 GMT", 0.0),  # a date in the past means now
        (None, None),
        ("", None),
        ("soon", None),
        ("-3", None),
        ("nan", None),
        ("inf", None),
        ("Mon, 99 Foo 2026", None),
    ],
)
def test_retry_after_parsing(value: str | None, expected: float | None) -> None:
    # Given a Retry-After value; When parsed at a fixed now; Then the delay is in seconds
    assert parse_retry_after(value, now=NOW) == expected


# --- success and payload typing ------------------------------------------------------------


def test_plain_success_is_none() -> None:
    assert classify(200, {"message": "success"}) is None
    assert classify(200, {"message": "Success"}) is None


def test_setup_success_with_settings_echo_is_plain_success() -> None:
    # Given apps/setup's documented answer; Then it is a plain success
    assert classify(200, {"message": "success", "settings": [{"a": "b"}]}) is None


def test_customer_rows_are_typed_with_active_as_a_bool() -> None:
    # Given the documented profile/get answer
    rows = [
        {"id": "123", "username": "u1", "email": "a@example.com", "active": "true", "zip": 91234},
        {"id": "124", "username": "u2", "active": "false", "unknown_field": "ignored"},
    ]
    # When classified as a customer list
    customers = classify(200, rows, Payload.CUSTOMERS)
    # Then every row is a Customer, active is a bool, scalars are text
    assert customers == [
        Customer(id="123", username="u1", email="a@example.com", active=True, zip="91234"),
        Customer(id="124", username="u2", active=False),
    ]


def test_an_empty_customer_list_is_an_empty_list() -> None:
    assert classify(200, [], Payload.CUSTOMERS) == []


def test_apps_are_typed_with_activated_as_a_bool() -> None:
    rows = [
        {"name": "gravatar", "title": "Gravatar", "description": "d", "activated": False},
        {"name": "clicktrack", "title": "Click Tracking", "activated": "1"},
    ]
    apps = classify(200, rows, Payload.APPS)
    assert apps == [
        App(name="gravatar", title="Gravatar", description="d", activated=False),
        App(name="clicktrack", title="Click Tracking", activated=True),
    ]


def test_settings_are_a_str_dict() -> None:
    assert classify(200, {"settings": {"field": "value", "n": 3}}, Payload.SETTINGS) == {
        "field": "value",
        "n": "3",
    }


@pytest.mark.parametrize(
    ("payload", "body"),
    [
        (Payload.CUSTOMERS, {"message": "success"}),
        (Payload.CUSTOMERS, [1, 2]),
        (Payload.CUSTOMERS, [{"username": "u", "active": "maybe"}]),
        (Payload.APPS, [{"title": "no name"}]),
        (Payload.SETTINGS, {"message": "success"}),
        (Payload.SETTINGS, {"settings": "flat"}),
        (Payload.SETTINGS, {"settings": {"nested": {"x": 1}}}),
    ],
)
def test_a_success_payload_of_the_wrong_shape_is_ambiguous(payload: Payload, body: Any) -> None:
    with pytest.raises(AmbiguousError):
        classify(200, body, payload)


def test_an_error_body_on_a_list_call_is_still_the_error() -> None:
    with pytest.raises(PermanentError) as caught:
        classify(400, {"message": "User not found"}, Payload.APPS)
    assert caught.value.code is ErrorCode.CUSTOMER_NOT_FOUND


# --- secrets ---------------------------------------------------------------------------------


def test_a_secret_echoed_by_the_api_is_scrubbed_from_the_error() -> None:
    # Given an API that echoes the password it was sent
    body = errors("password hunter22 is too weak")
    # When classified with the call's secrets
    with pytest.raises(PermanentError) as caught:
        classify(400, body, secrets=("hunter22",))
    # Then the password appears nowhere in the error
    assert "hunter22" not in str(caught.value)
    assert "hunter22" not in repr(caught.value)
    assert all("hunter22" not in text for text in caught.value.api_errors)


# --- exceptions: nothing sent -> transient, sent without answer -> ambiguous ---------------


def _refused() -> NewConnectionError:
    return NewConnectionError(None, "Failed to establish a new connection: refused")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        (_refused(), TransientError),
        (NameResolutionError("h", None, OSError()), TransientError),  # type: ignore[arg-type]
        (ConnectTimeoutError("connect timeout"), TransientError),
        (ProxyError("proxy refused", _refused()), TransientError),
        (SSLError("handshake"), TransientError),
        (ReadTimeoutError(None, "/x?api_key=SECRETKEY", "read timed out"), AmbiguousError),  # type: ignore[arg-type]
        (ProtocolError("Connection aborted.", ConnectionResetError()), AmbiguousError),
        (ProtocolError("Connection aborted.", RemoteDisconnected("closed")), AmbiguousError),
        (
            ProtocolError("Connection broken: IncompleteRead", IncompleteRead(12, 88)),
            AmbiguousError,
        ),
        (DecodeError("bad gzip"), AmbiguousError),
        (ConnectionResetError(104, "reset"), AmbiguousError),
        (LocationParseError("bad url"), TransientError),
    ],
)
def test_request_exceptions_map_to_one_outcome(exc: Exception, outcome: type[Exception]) -> None:
    # Given a failure of the HTTP layer; When classified
    error = classify_exception(LABEL, exc)
    # Then it is exactly the expected class, named by the call, with none of the raw text
    assert type(error) is outcome
    assert LABEL in str(error)
    assert "SECRETKEY" not in str(error)
    assert error.__cause__ is None
    assert error.__context__ is None


# --- form building (the table) -------------------------------------------------------------


def test_reset_password_sends_confirm_password_equal_to_the_password() -> None:
    params = build_params(CALLS["ResetPassword"], {"customer": "c", "new_password": "s3cret!"})
    assert params == [
        ("method", "password"),
        ("user", "c"),
        ("password", "s3cret!"),
        ("confirm_password", "s3cret!"),
    ]


def test_create_customer_encodes_lists_booleans_and_dates() -> None:
    values = {
        "username": "u",
        "password": "pw1234",
        "ip_groups": ["g1", "g2"],
        "ips": ["10.0.0.1"],
        "free_user": False,
        "billing_date": datetime.date(2026, 1, 5),
    }
    params = build_params(CALLS["CreateCustomer"], values)
    assert ("confirm_password", "pw1234") in params
    assert [v for k, v in params if k == "ip_group[]"] == ["g1", "g2"]
    assert ("ip[]", "10.0.0.1") in params
    assert ("free_user", "false") in params
    assert ("billing_date", "2026-01-05") in params


def test_configure_app_spreads_settings_and_refuses_reserved_names() -> None:
    spec = CALLS["ConfigureApp"]
    params = build_params(spec, {"customer": "c", "app": "twitter", "settings": {"k": "v"}})
    assert params[-1] == ("k", "v")
    assert ("name", "twitter") in params
    with pytest.raises(ValueError, match="reserved"):
        build_params(spec, {"customer": "c", "app": "a", "settings": {"api_key": "x"}})


def test_every_command_type_has_a_row() -> None:
    assert len(CALLS) == 19
    assert CALLS["ChangeEmail"].fixed == (("method", "profile"), ("task", "setEmail"))
