"""The reseller client over real HTTP: the sandbox server, and raw sockets for broken peers."""

from __future__ import annotations

import datetime
import logging
import socket
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from contracts import commands as c
from contracts.events import App, Customer, ErrorCode
from contracts.secret import Secret
from tests.fixtures.wait import wait_until
from worker.api import ResellerClient
from worker.config import Settings
from worker.errors import AmbiguousError, PermanentError, ProvisioningError, TransientError

CUSTOMER_PASSWORD = "cust-pw-" + uuid.uuid4().hex[:10]
CREDENTIAL_PASSWORD = "cred-pw-" + uuid.uuid4().hex[:10]
NEW_PASSWORD = "new-pw-" + uuid.uuid4().hex[:10]
WRONG_API_KEY = "wrong-key-" + uuid.uuid4().hex[:10]
SHORT_TIMEOUT_S = 0.3
HANG_S = 2.0
CONTROL_TIMEOUT_S = 5.0
IN_FLIGHT = 2
CALLERS = 6


# --- fixtures and helpers --------------------------------------------------------------------


class LeakGuard:
    """Collects every error the client raised so the test can prove no secret is in any of them."""

    def __init__(self, secrets: list[str]) -> None:
        self.secrets = secrets
        self.errors: list[ProvisioningError] = []

    def raises(self, kind: type[ProvisioningError], call: Callable[[], object]) -> Any:
        with pytest.raises(kind) as caught:
            call()
        self.errors.append(caught.value)
        # Nothing from the HTTP layer (which saw the request body) chains onto the error
        assert caught.value.__cause__ is None
        assert caught.value.__context__ is None
        return caught.value

    def assert_clean(self, records: list[logging.LogRecord]) -> None:
        formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
        texts = [formatter.format(record) for record in records]
        for error in self.errors:
            texts += [str(error), repr(error), *map(str, error.api_errors)]
            texts.append("".join(traceback.format_exception(error)))
        for secret in self.secrets:
            leaked = [text for text in texts if secret in text]
            assert not leaked, f"a secret leaked into: {leaked[0][:200]}"


@pytest.fixture
def guard(sandbox: Any, caplog: pytest.LogCaptureFixture) -> Iterator[LeakGuard]:
    caplog.set_level(logging.DEBUG)
    secrets = [sandbox.api_key, CUSTOMER_PASSWORD, CREDENTIAL_PASSWORD, NEW_PASSWORD, WRONG_API_KEY]
    leak_guard = LeakGuard(secrets)
    yield leak_guard
    # Then, whatever the test did, no secret is in a log record or a raised error
    # (caplog.records would only hold the teardown phase here)
    leak_guard.assert_clean(caplog.get_records("setup") + caplog.get_records("call"))


ObservedCalls = list[tuple[str, str, float]]


@pytest.fixture
def observed() -> ObservedCalls:
    return []


def make_client(base_url: str, sandbox: Any, observed: ObservedCalls, **kwargs: Any) -> Any:
    kwargs.setdefault("timeout_s", 5.0)
    kwargs.setdefault("connect_timeout_s", 2.0)
    kwargs.setdefault("api_key", sandbox.api_key)
    return ResellerClient(
        base_url,
        sandbox.api_user,
        pool_size=2,
        on_request=lambda *args: observed.append(args),
        **kwargs,
    )


@pytest.fixture
def client(sandbox: Any, observed: ObservedCalls) -> Iterator[ResellerClient]:
    with make_client(sandbox.url, sandbox, observed) as api:
        yield api


def control(sandbox: Any, path: str, payload: dict[str, Any] | None = None) -> Any:
    parts = urlsplit(sandbox.url)
    url = f"{parts.scheme}://{parts.netloc}/_sandbox/{path}"
    if payload is None and path != "reset":
        response = requests.get(url, timeout=CONTROL_TIMEOUT_S)
    else:
        response = requests.post(url, json=payload or {}, timeout=CONTROL_TIMEOUT_S)
    response.raise_for_status()
    return response.json() if response.content else None


def inject(sandbox: Any, call: str, task: str | None, fault: str, **settings: float) -> None:
    rule = {"call": call, "task": task, "fault": fault, "count": 1}
    control(sandbox, "faults", {"next": [rule], **settings})


def unique(prefix: str = "cust") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


def create_command(username: str, **overrides: Any) -> c.CreateCustomer:
    fields: dict[str, Any] = {
        "idempotency_key": uuid.uuid4().hex,
        "username": username,
        "password": Secret(CUSTOMER_PASSWORD),
        "email": username,
        "first_name": "Ada",
        "last_name": "Lovelace",
        "address": "1 Analytical St",
        "city": "London",
        "state": "LDN",
        "zip": "12345",
        "country": "GB",
        "phone": "555-0100",
        "website": "example.com",
        "company": "Engines Ltd",
        "package": "Silver",
        "whitelabel": "sendgrid.me",
    }
    return c.CreateCustomer(**{**fields, **overrides})


def run(client: ResellerClient, command_type: type[Any], **fields: Any) -> Any:
    """One call through the client's entry point, a typed command as the worker sends it."""
    return client.execute(command_type(idempotency_key=key(), **fields))


def given_customer(client: ResellerClient) -> str:
    username = unique()
    client.execute(create_command(username))
    return username


def only_customer(client: ResellerClient, username: str) -> Customer:
    rows = client.list_customers(username=username)
    assert len(rows) == 1, rows
    return rows[0]


def key() -> str:
    return uuid.uuid4().hex


# --- every call's success path ---------------------------------------------------------------


def test_customer_calls_succeed_and_lists_are_typed(
    client: ResellerClient, guard: LeakGuard
) -> None:
    # Given a new customer
    username = given_customer(client)
    # Then it lists as a typed, active Customer
    row = only_customer(client, username)
    assert isinstance(row, Customer)
    assert (row.username, row.email, row.active, row.company) == (
        username,
        username,
        True,
        "Engines Ltd",
    )
    # When it is disabled, then enabled; Then the listing follows
    run(client, c.DisableCustomer, customer=username)
    assert only_customer(client, username).active is False
    run(client, c.EnableCustomer, customer=username)
    assert only_customer(client, username).active is True
    # When the website access is toggled and the password reset; Then each call succeeds
    run(client, c.DisableWebsiteAccess, customer=username)
    run(client, c.EnableWebsiteAccess, customer=username)
    run(client, c.ResetPassword, customer=username, new_password=Secret(NEW_PASSWORD))
    # When the profile and email change; Then the listing shows them
    run(client, c.UpdateCustomerProfile, customer=username, first_name="Grace", city="Arlington")
    new_email = unique("mail")
    run(client, c.ChangeEmail, customer=username, new_email=new_email)
    row = only_customer(client, username)
    assert (row.first_name, row.city, row.email) == ("Grace", "Arlington", new_email)
    # When the username changes; Then the customer lists under the new name only
    new_username = unique("renamed")
    run(client, c.ChangeUsername, customer=username, new_username=new_username)
    assert client.list_customers(username=username) == []
    assert only_customer(client, new_username).first_name == "Grace"
    # When it is deleted; Then it no longer lists
    run(client, c.DeleteCustomer, customer=new_username)
    assert client.list_customers(username=new_username) == []


def test_list_customers_filters_limit_and_offset(client: ResellerClient, guard: LeakGuard) -> None:
    # Given three customers of one company
    company = f"Co-{uuid.uuid4().hex[:8]}"
    names = [unique() for _ in range(3)]
    for name in names:
        client.execute(create_command(name, company=company))
    run(client, c.DisableCustomer, customer=names[0])
    # When listing by company with limit/offset and by the active flag
    everyone = client.list_customers(company=company)
    page = client.list_customers(company=company, limit=1, offset=1)
    inactive = client.list_customers(company=company, active=False)
    # Then the filters, the page and the boolean encoding are honoured
    assert sorted(row.username for row in everyone) == sorted(names)
    assert page == [everyone[1]]
    assert [row.username for row in inactive] == [names[0]]


def test_create_customer_with_ip_groups_free_user_and_billing_date(
    client: ResellerClient, guard: LeakGuard
) -> None:
    # Given a command using every optional add parameter
    username = unique()
    billing_date = datetime.datetime.now(datetime.UTC).date() + datetime.timedelta(days=3)
    command = create_command(
        username,
        ip_groups=["group-a", "group-b"],
        ips=["127.0.0.2"],
        free_user=True,
        billing_date=billing_date,
    )
    # When it is executed; Then the API accepts the encoding and the customer exists
    assert client.execute(command) is None
    assert only_customer(client, username).username == username


def test_credential_calls_succeed(client: ResellerClient, guard: LeakGuard) -> None:
    # Given a customer
    username = given_customer(client)
    # When a credential is added, its password changed, and it is deleted
    run(
        client,
        c.AddCredential,
        customer=username,
        credential_name="smtp-main",
        credential_password=Secret(CREDENTIAL_PASSWORD),
    )
    run(
        client,
        c.ChangeCredentialPassword,
        customer=username,
        credential_name="smtp-main",
        new_credential_password=Secret(NEW_PASSWORD),
    )
    run(client, c.DeleteCredential, customer=username, credential_name="smtp-main")
    # Then deleting it again says it does not exist
    error = guard.raises(
        PermanentError,
        lambda: run(client, c.DeleteCredential, customer=username, credential_name="smtp-main"),
    )
    assert error.code is ErrorCode.NOT_FOUND


def test_app_calls_succeed_and_are_typed(client: ResellerClient, guard: LeakGuard) -> None:
    # Given a customer
    username = given_customer(client)
    # When its apps are listed; Then they are typed Apps, none activated
    apps = run(client, c.ListApps, customer=username)
    assert apps and all(isinstance(app, App) for app in apps)
    assert {"gravatar", "twitter"} <= {app.name for app in apps}
    # When one is activated; Then the listing shows it
    run(client, c.ActivateApp, customer=username, app="gravatar")
    activated = {app.name: app.activated for app in run(client, c.ListApps, customer=username)}
    assert activated["gravatar"] is True
    # When one is configured; Then its settings read back as a str dict
    run(
        client,
        c.ConfigureApp,
        customer=username,
        app="twitter",
        settings={"username": "tw-user", "tweet_limit": "5"},
    )
    settings = run(client, c.GetAppSettings, customer=username, app="twitter")
    assert settings["username"] == "tw-user"
    assert settings["tweet_limit"] == "5"
    # When it is deactivated; Then the listing shows it off
    run(client, c.DeactivateApp, customer=username, app="gravatar")
    activated = {app.name: app.activated for app in run(client, c.ListApps, customer=username)}
    assert activated["gravatar"] is False


def test_execute_dispatches_every_command_type(client: ResellerClient, guard: LeakGuard) -> None:
    # Given one command of each of the 19 types, in an order that makes each one valid
    username, renamed = unique(), unique("renamed")
    commands: list[Any] = [
        create_command(username),
        c.ListCustomers(idempotency_key=key(), username=username),
        c.DisableCustomer(idempotency_key=key(), customer=username),
        c.EnableCustomer(idempotency_key=key(), customer=username),
        c.DisableWebsiteAccess(idempotency_key=key(), customer=username),
        c.EnableWebsiteAccess(idempotency_key=key(), customer=username),
        c.UpdateCustomerProfile(idempotency_key=key(), customer=username, last_name="Hopper"),
        c.ResetPassword(
            idempotency_key=key(), customer=username, new_password=Secret(NEW_PASSWORD)
        ),
        c.ChangeEmail(idempotency_key=key(), customer=username, new_email=unique("mail")),
        c.ChangeUsername(idempotency_key=key(), customer=username, new_username=renamed),
        c.AddCredential(
            idempotency_key=key(),
            customer=renamed,
            credential_name="smtp-x",
            credential_password=Secret(CREDENTIAL_PASSWORD),
        ),
        c.ChangeCredentialPassword(
            idempotency_key=key(),
            customer=renamed,
            credential_name="smtp-x",
            new_credential_password=Secret(NEW_PASSWORD),
        ),
        c.DeleteCredential(idempotency_key=key(), customer=renamed, credential_name="smtp-x"),
        c.ListApps(idempotency_key=key(), customer=renamed),
        c.ActivateApp(idempotency_key=key(), customer=renamed, app="footer"),
        c.ConfigureApp(
            idempotency_key=key(), customer=renamed, app="footer", settings={"text": "bye"}
        ),
        c.GetAppSettings(idempotency_key=key(), customer=renamed, app="footer"),
        c.DeactivateApp(idempotency_key=key(), customer=renamed, app="footer"),
        c.DeleteCustomer(idempotency_key=key(), customer=renamed),
    ]
    assert len({type(command) for command in commands}) == 19
    # When each is executed
    results = {type(command).__name__: client.execute(command) for command in commands}
    # Then list calls return their typed payloads and every other call plain success
    assert [row.last_name for row in results.pop("ListCustomers")] == ["Lovelace"]  # type: ignore[union-attr]
    assert all(isinstance(app, App) for app in results.pop("ListApps"))  # type: ignore[union-attr]
    assert results.pop("GetAppSettings") == {"text": "bye"}
    assert set(results.values()) == {None}
    assert client.list_customers(username=renamed) == []


def test_distributor_naming_reaches_the_same_api(
    sandbox: Any, observed: ObservedCalls, guard: LeakGuard
) -> None:
    # Given a client using the older distributor naming (base URL without a trailing slash)
    base_url = sandbox.distributor_url.rstrip("/")
    with make_client(base_url, sandbox, observed, naming="distributor") as old:
        # When a customer is created and listed through it
        username = unique()
        old.execute(create_command(username))
        # Then the call worked through distributor.<call>.json (the sandbox has no
        # reseller.<call>.json under /api/)
        assert only_customer(old, username).username == username
        error = guard.raises(
            PermanentError, lambda: run(old, c.EnableCustomer, customer=unique("ghost"))
        )
        assert error.code is ErrorCode.CUSTOMER_NOT_FOUND


# --- documented errors -----------------------------------------------------------------------


def test_unknown_customer_is_customer_not_found_on_every_kind_of_call(
    client: ResellerClient, guard: LeakGuard
) -> None:
    # Given a username nobody registered
    ghost = unique("ghost")
    calls: list[Callable[[], object]] = [
        lambda: run(client, c.DeleteCustomer, customer=ghost),
        lambda: run(client, c.EnableCustomer, customer=ghost),
        lambda: run(client, c.ResetPassword, customer=ghost, new_password=Secret(NEW_PASSWORD)),
        lambda: run(
            client,
            c.AddCredential,
            customer=ghost,
            credential_name="smtp-main",
            credential_password=Secret(CREDENTIAL_PASSWORD),
        ),
        lambda: run(client, c.ListApps, customer=ghost),
    ]
    # When any call names it; Then it is the permanent customer_not_found
    for call in calls:
        error = guard.raises(PermanentError, call)
        assert error.code is ErrorCode.CUSTOMER_NOT_FOUND


def test_duplicates_are_already_exists(client: ResellerClient, guard: LeakGuard) -> None:
    # Given two customers, one with a credential
    first, second = given_customer(client), given_customer(client)
    run(
        client,
        c.AddCredential,
        customer=first,
        credential_name="smtp-main",
        credential_password=Secret(CREDENTIAL_PASSWORD),
    )
    # When a username or credential is reused; Then each is already_exists
    duplicates: list[Callable[[], object]] = [
        lambda: client.execute(create_command(first)),
        lambda: run(client, c.ChangeUsername, customer=second, new_username=first),
        lambda: run(
            client,
            c.AddCredential,
            customer=first,
            credential_name="smtp-main",
            credential_password=Secret(CREDENTIAL_PASSWORD),
        ),
    ]
    for call in duplicates:
        error = guard.raises(PermanentError, call)
        assert error.code is ErrorCode.ALREADY_EXISTS
        assert any("already exists" in text.lower() for text in error.api_errors)


def test_unknown_app_is_not_found(client: ResellerClient, guard: LeakGuard) -> None:
    username = given_customer(client)
    error = guard.raises(
        PermanentError, lambda: run(client, c.ActivateApp, customer=username, app="no-such-app")
    )
    assert error.code is ErrorCode.NOT_FOUND


def test_a_setting_named_like_a_reserved_parameter_is_refused_before_sending(
    client: ResellerClient, guard: LeakGuard, observed: ObservedCalls
) -> None:
    # Given settings that would override the API key in the form
    settings = {"api_key": NEW_PASSWORD}
    # When configuring an app with them; Then it is refused and nothing was sent
    configure = c.ConfigureApp(
        idempotency_key=key(), customer="anyone", app="twitter", settings=settings
    )
    error = guard.raises(PermanentError, lambda: client.execute(configure))
    assert error.code is ErrorCode.API_REJECTED
    assert observed == []


def test_bad_credentials_are_auth_failed(
    sandbox: Any, observed: ObservedCalls, guard: LeakGuard
) -> None:
    # Given a client with the wrong API key
    with make_client(sandbox.url, sandbox, observed, api_key=WRONG_API_KEY) as wrong:
        # When it calls; Then it is the permanent auth_failed
        error = guard.raises(PermanentError, lambda: wrong.list_customers())
    assert error.code is ErrorCode.AUTH_FAILED
    assert observed[-1][:2] == ("manage.profile.get", "4xx")


def test_validation_refusals_are_api_rejected(client: ResellerClient, guard: LeakGuard) -> None:
    # Given a customer; When the API refuses a value it validates
    username = given_customer(client)
    short = guard.raises(
        PermanentError,
        lambda: run(client, c.ResetPassword, customer=username, new_password=Secret("abc")),
    )
    bad_email = guard.raises(
        PermanentError,
        lambda: run(client, c.ChangeEmail, customer=username, new_email="not-an-email"),
    )
    # Then each is api_rejected and carries the API's own reasons
    assert short.code is ErrorCode.API_REJECTED
    assert bad_email.code is ErrorCode.API_REJECTED
    assert short.api_errors and bad_email.api_errors


# --- transport failures ----------------------------------------------------------------------


def test_a_read_timeout_is_ambiguous_and_the_change_was_applied(
    sandbox: Any, observed: ObservedCalls, guard: LeakGuard
) -> None:
    # Given a customer and an API that applies the next disable and then hangs
    with make_client(sandbox.url, sandbox, observed, timeout_s=SHORT_TIMEOUT_S) as impatient:
        username = given_customer(impatient)
        inject(sandbox, "manage", "disable", "hang", hang_s=HANG_S)
        # When the client disables it with a short read timeout
        error = guard.raises(
            AmbiguousError, lambda: run(impatient, c.DisableCustomer, customer=username)
        )
        # Then the outcome is ambiguous, observed as a timeout, and the change is visible
        assert "read timeout" in str(error)
        assert observed[-1][:2] == ("manage.disable", "timeout")
        wait_until(
            lambda: only_customer(impatient, username).active is False,
            timeout_s=5.0,
            message="the hung disable to be visible",
        )


def test_a_reset_after_the_request_is_ambiguous_and_the_change_was_applied(
    client: ResellerClient, sandbox: Any, guard: LeakGuard
) -> None:
    # Given an API that applies the next add and then drops the connection
    inject(sandbox, "add", None, "reset")
    username = unique()
    # When the client creates a customer
    guard.raises(AmbiguousError, lambda: client.execute(create_command(username)))
    # Then the customer exists nonetheless
    wait_until(
        lambda: client.list_customers(username=username),
        timeout_s=5.0,
        message="the reset add to be visible",
    )


def test_5xx_is_ambiguous(
    client: ResellerClient, sandbox: Any, observed: ObservedCalls, guard: LeakGuard
) -> None:
    # Given an API failing the next enable with a server error
    username = given_customer(client)
    inject(sandbox, "manage", "enable", "5xx")
    # When the client enables; Then it is ambiguous (a gateway may answer for an API that
    # applied it) and observed as 5xx
    guard.raises(AmbiguousError, lambda: run(client, c.EnableCustomer, customer=username))
    assert observed[-1][:2] == ("manage.enable", "5xx")
    # And the same call succeeds afterwards
    run(client, c.EnableCustomer, customer=username)


def test_429_is_transient_with_the_retry_after_delay(
    client: ResellerClient, sandbox: Any, guard: LeakGuard
) -> None:
    # Given an API rate-limiting the next credential add with Retry-After 7 seconds
    username = given_customer(client)
    inject(sandbox, "credential", "add", "429", retry_after_s=7)
    # When the client adds a credential; Then it is transient with the delay
    add = c.AddCredential(
        idempotency_key=key(),
        customer=username,
        credential_name="smtp-main",
        credential_password=Secret(CREDENTIAL_PASSWORD),
    )
    error = guard.raises(TransientError, lambda: client.execute(add))
    assert error.retry_after_s == 7.0


def test_connection_refused_is_transient(
    sandbox: Any, observed: ObservedCalls, guard: LeakGuard
) -> None:
    # Given a port nothing listens on
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with make_client(f"http://127.0.0.1:{port}/apiv2/", sandbox, observed) as nowhere:
        # When the client calls it; Then nothing was sent: transient, observed as an error
        error = guard.raises(
            TransientError, lambda: run(nowhere, c.EnableCustomer, customer="someone")
        )
    assert "cannot connect" in str(error)
    assert observed[-1][:2] == ("manage.enable", "error")


# --- a raw-socket peer: what exactly is sent, and peers that break mid-answer ---------------


class RawPeer:
    """A one-connection-at-a-time HTTP peer: records each request, answers with ``reply``
    (raw bytes; ``None`` closes the connection without answering)."""

    def __init__(self, reply: bytes | None) -> None:
        self.reply = reply
        self.requests: list[bytes] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(CONTROL_TIMEOUT_S)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/apiv2/"
        self._thread = threading.Thread(target=self._serve_one, daemon=True)
        self._thread.start()

    def _serve_one(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return
        with conn:
            self.requests.append(_read_request(conn))
            if self.reply is not None:
                conn.sendall(self.reply)

    def close(self) -> None:
        self._listener.close()
        self._thread.join(timeout=CONTROL_TIMEOUT_S)


def _read_request(conn: socket.socket) -> bytes:
    conn.settimeout(CONTROL_TIMEOUT_S)
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += conn.recv(65536)
    return head + b"\r\n\r\n" + body


@pytest.fixture
def raw_peer() -> Iterator[Callable[[bytes | None], RawPeer]]:
    peers: list[RawPeer] = []

    def start(reply: bytes | None) -> RawPeer:
        peers.append(RawPeer(reply))
        return peers[-1]

    yield start
    for peer in peers:
        peer.close()


def http_reply(body: bytes, *, content_length: int | None = None, status: str = "200 OK") -> bytes:
    length = len(body) if content_length is None else content_length
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n"
    return head.encode() + b"Connection: close\r\n\r\n" + body


def test_the_request_is_a_form_post_with_credentials_only_in_the_body(
    sandbox: Any,
    observed: ObservedCalls,
    raw_peer: Callable[[bytes | None], RawPeer],
    guard: LeakGuard,
) -> None:
    # Given a peer that records the request and answers success
    peer = raw_peer(http_reply(b'{"message": "success"}'))
    command = create_command(
        unique(), ip_groups=["g1", "g2"], free_user=False, billing_date=datetime.date(2026, 12, 1)
    )
    # When a customer is created through it
    with make_client(peer.url, sandbox, observed) as api:
        api.execute(command)
    # Then it is a form POST to the .json endpoint with no query string
    head, _, body = peer.requests[0].partition(b"\r\n\r\n")
    request_line = head.split(b"\r\n")[0].decode()
    assert request_line == "POST /apiv2/reseller.add.json HTTP/1.1"
    assert b"application/x-www-form-urlencoded" in head
    form = parse_qsl(body.decode(), keep_blank_values=True)
    # And the credentials, confirm_password and encodings are in the body as documented
    assert form[:2] == [("api_user", sandbox.api_user), ("api_key", sandbox.api_key)]
    assert ("confirm_password", CUSTOMER_PASSWORD) in form
    assert [v for k, v in form if k == "ip_group[]"] == ["g1", "g2"]
    assert ("free_user", "false") in form
    assert ("billing_date", "2026-12-01") in form


def test_the_environments_http_proxy_carries_the_request(
    sandbox: Any,
    observed: ObservedCalls,
    raw_peer: Callable[[bytes | None], RawPeer],
    guard: LeakGuard,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a forward proxy named by http_proxy (a peer that answers success itself)
    proxy = raw_peer(http_reply(b'{"message": "success"}'))
    monkeypatch.setenv("http_proxy", proxy.url.removesuffix("/apiv2/"))
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    # When a client for an API on another port calls it (port 9: nothing listens there)
    with make_client("http://127.0.0.1:9/apiv2", sandbox, observed) as api:
        run(api, c.EnableCustomer, customer="u1")
    # Then the proxy got the request in absolute form, credentials still only in the body
    request_line = proxy.requests[0].split(b"\r\n")[0].decode()
    assert request_line == "POST http://127.0.0.1:9/apiv2/reseller.manage.json HTTP/1.1"
    assert sandbox.api_key.encode() in proxy.requests[0].partition(b"\r\n\r\n")[2]
    assert observed[-1][:2] == ("manage.enable", "2xx")


def test_a_connection_closed_after_the_request_is_ambiguous(
    sandbox: Any,
    observed: ObservedCalls,
    raw_peer: Callable[[bytes | None], RawPeer],
    guard: LeakGuard,
) -> None:
    # Given a peer that reads the whole request, then closes without answering
    peer = raw_peer(None)
    with make_client(peer.url, sandbox, observed) as api:
        # When the client calls it
        error = guard.raises(
            AmbiguousError,
            lambda: run(api, c.ResetPassword, customer="u1", new_password=Secret(NEW_PASSWORD)),
        )
    # Then the request was delivered, and the outcome is ambiguous
    assert NEW_PASSWORD.encode() in peer.requests[0]
    assert "after the request was sent" in str(error)
    assert observed[-1][:2] == ("manage.password", "error")


def test_a_truncated_response_is_ambiguous(
    sandbox: Any,
    observed: ObservedCalls,
    raw_peer: Callable[[bytes | None], RawPeer],
    guard: LeakGuard,
) -> None:
    # Given a peer that promises 100 bytes and sends 12 before closing
    peer = raw_peer(http_reply(b'{"message": ', content_length=100))
    with make_client(peer.url, sandbox, observed) as api:
        # When the client calls it; Then the outcome is ambiguous
        error = guard.raises(AmbiguousError, lambda: run(api, c.EnableCustomer, customer="u1"))
    assert "truncated" in str(error)


def test_a_non_json_answer_is_ambiguous(
    sandbox: Any,
    observed: ObservedCalls,
    raw_peer: Callable[[bytes | None], RawPeer],
    guard: LeakGuard,
) -> None:
    # Given a proxy answering an HTML page with 200
    peer = raw_peer(http_reply(b"<html>maintenance</html>"))
    with make_client(peer.url, sandbox, observed) as api:
        # When the client calls it; Then it is ambiguous: it does not prove nothing applied
        guard.raises(AmbiguousError, lambda: run(api, c.EnableCustomer, customer="u1"))


def test_each_request_logs_one_debug_line_with_call_status_and_duration(
    client: ResellerClient,
    caplog: pytest.LogCaptureFixture,
    observed: ObservedCalls,
    guard: LeakGuard,
) -> None:
    # Given DEBUG logging
    caplog.set_level(logging.DEBUG, logger="worker.api")
    # When one call is made
    client.list_customers(username=unique("nobody"))
    # Then one line names the call and its status, and the observer saw the same call
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("worker.api")]
    assert len(lines) == 1
    assert "manage.profile.get" in lines[0]
    assert "200" in lines[0]
    assert observed[-1][:2] == ("manage.profile.get", "2xx")
    assert observed[-1][2] >= 0.0


def test_from_settings_builds_a_working_client_and_a_failing_observer_changes_nothing(
    sandbox: Any, guard: LeakGuard
) -> None:
    # Given settings pointing at the sandbox, and an observer that always fails
    settings = Settings(
        api_url=sandbox.distributor_url,
        api_user=sandbox.api_user,
        api_key=sandbox.api_key,
        api_naming="distributor",
        concurrency=3,
    )

    def broken_observer(call: str, status_class: str, duration_s: float) -> None:
        raise RuntimeError("metrics backend down")

    # When a call is made through the client built from them
    with ResellerClient.from_settings(settings, on_request=broken_observer) as api:
        rows = api.list_customers(username=unique("nobody"))
        # Then the call's own outcome stands, and the key is not in the client's repr
        assert rows == []
        assert sandbox.api_key not in repr(api)


class HeldPeer:
    """Answers success to any number of connections, but holds each request until the test
    lets one go: how many are in flight at once is then exact, not a matter of timing."""

    def __init__(self) -> None:
        self.active = self.max_active = self.answered = 0
        self._to_let_go = 0
        self._cond = threading.Condition()
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/apiv2/"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._hold, args=(conn,), daemon=True).start()

    def _hold(self, conn: socket.socket) -> None:
        with conn:
            _read_request(conn)
            with self._cond:
                self.active += 1
                self.max_active = max(self.max_active, self.active)
                self._cond.notify_all()
                self._cond.wait_for(lambda: self._to_let_go > 0, timeout=CONTROL_TIMEOUT_S)
                self._to_let_go -= 1
                self.active -= 1
                self.answered += 1
            conn.sendall(http_reply(b'{"message": "success"}'))

    def let_one_go(self) -> None:
        with self._cond:
            self._to_let_go += 1
            self._cond.notify_all()

    def close(self) -> None:
        self._listener.close()


def test_no_more_than_max_in_flight_requests_are_sent_at_once(
    sandbox: Any, observed: ObservedCalls, guard: LeakGuard
) -> None:
    # Given a peer holding every request, and a client allowing two at once on six threads
    peer = HeldPeer()
    answers: list[str] = []
    with make_client(peer.url, sandbox, observed, max_in_flight=IN_FLIGHT) as api:

        def call(i: int) -> None:
            run(api, c.EnableCustomer, customer=f"customer-{i}")
            answers.append(f"customer-{i}")

        callers = [threading.Thread(target=call, args=(i,)) for i in range(CALLERS)]
        for caller in callers:
            caller.start()
        # When the peer lets one request go each time it holds as many as allowed
        wait_until(lambda: peer.active == IN_FLIGHT, message="the first requests to arrive")
        holding = api.requests_in_flight()
        for left in range(CALLERS, 0, -1):
            wait_until(
                lambda left=left: peer.active == min(IN_FLIGHT, left),
                message="the peer to hold as many requests as allowed",
            )
            peer.let_one_go()
        for caller in callers:
            caller.join(CONTROL_TIMEOUT_S)
    peer.close()
    # Then never more than two were in flight, as the client itself reported, and every
    # call was answered
    assert holding == IN_FLIGHT
    assert api.requests_in_flight() == 0
    assert peer.max_active == IN_FLIGHT
    assert peer.answered == CALLERS
    assert len(answers) == CALLERS
