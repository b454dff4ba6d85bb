"""The transport (urllib3) over real sockets: keep-alive, dropped connections, interim
answers, TLS, timeouts, chunked and gzip answers."""

from __future__ import annotations

import contextlib
import gzip
import socket
import ssl
import threading
from collections.abc import Callable, Iterator

import pytest
import trustme
from urllib3.exceptions import EmptyPoolError, ReadTimeoutError, SSLError

from tests.fixtures.wait import wait_until
from worker.api.classify import classify_exception
from worker.api.transport import HttpTransport
from worker.errors import AmbiguousError, TransientError

PEER_TIMEOUT_S = 5.0
SHORT_READ_TIMEOUT_S = 0.3
FORM = [("api_user", "u"), ("api_key", "k"), ("task", "get")]
SUCCESS = b'{"message": "success"}'

Answer = Callable[[socket.socket], None]  # writes one answer to the request just read


def keep_alive(body: bytes = SUCCESS, *, extra: str = "") -> Answer:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{extra}"
    return lambda conn: conn.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)


class Peer:
    """Answers request n (over all connections) with ``answers[n]``; ``close_idle`` closes
    each connection after its answer without saying so (a server's keep-alive timeout)."""

    def __init__(
        self, answers: list[Answer], *, tls: ssl.SSLContext | None = None, close_idle: bool = False
    ) -> None:
        self.answers, self.tls, self.close_idle = answers, tls, close_idle
        self.connections = self.requests = self.closed_by_client = self.closed_by_peer = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(PEER_TIMEOUT_S)
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self._listener.getsockname()[1]}/apiv2"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while self.requests < len(self.answers):
            try:
                conn, _ = self._listener.accept()
                if self.tls is not None:
                    conn = self.tls.wrap_socket(conn, server_side=True)
            except OSError:
                return  # closed, or a client that gave up on the handshake
            self.connections += 1
            with conn:
                self._answer_on(conn)
            self.closed_by_peer += 1

    def _answer_on(self, conn: socket.socket) -> None:
        conn.settimeout(PEER_TIMEOUT_S)
        buffered = b""
        while self.requests < len(self.answers):
            while b"\r\n\r\n" not in buffered:
                chunk = conn.recv(65536)
                if not chunk:
                    self.closed_by_client += 1
                    return
                buffered += chunk
            head, _, buffered = buffered.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            while len(buffered) < length:
                buffered += conn.recv(65536)
            buffered = buffered[length:]
            self.requests += 1
            self.answers[self.requests - 1](conn)
            if self.close_idle:
                return

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes a waiting accept on Linux
        self._listener.close()
        self._thread.join(PEER_TIMEOUT_S)


@pytest.fixture
def peers() -> Iterator[Callable[..., Peer]]:
    started: list[Peer] = []

    def start(answers: list[Answer], **kwargs: object) -> Peer:
        started.append(Peer(answers, **kwargs))  # type: ignore[arg-type]
        return started[-1]

    yield start
    for peer in started:
        peer.close()


def transport(url: str, *, timeout_s: float = PEER_TIMEOUT_S) -> HttpTransport:
    return HttpTransport(
        url, connect_timeout_s=PEER_TIMEOUT_S, timeout_s=timeout_s, pool_size=2, headers={}
    )


@pytest.fixture
def ca(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> trustme.CA:
    """A throw-away CA that the transport trusts (through REQUESTS_CA_BUNDLE, as deployed)."""
    authority = trustme.CA()
    bundle = tmp_path_factory.mktemp("ca") / "bundle.pem"
    authority.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    return authority


def server_context(authority: trustme.CA, hostname: str = "127.0.0.1") -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    authority.issue_cert(hostname).configure_cert(context)
    return context


def test_sequential_posts_share_one_keep_alive_connection(peers: Callable[..., Peer]) -> None:
    # Given a peer that keeps connections open
    peer = peers([keep_alive(), keep_alive()])
    # When two POSTs are made one after the other
    api = transport(peer.url)
    answers = [api.post_form("reseller.manage.json", FORM) for _ in range(2)]
    api.close()
    # Then both are answered over one connection
    assert [a.status for a in answers] == [200, 200]
    assert answers[1].data == SUCCESS
    assert peer.connections == 1


def test_a_connection_the_server_closed_while_idle_is_replaced_not_failed(
    peers: Callable[..., Peer],
) -> None:
    # Given a peer that closes every connection after answering, without saying so
    peer = peers([keep_alive(), keep_alive()], close_idle=True)
    api = transport(peer.url)
    api.post_form("reseller.manage.json", FORM)
    wait_until(lambda: peer.closed_by_peer == 1, message="the peer to close the connection")
    # When the next POST is made after the server closed the idle connection
    answer = api.post_form("reseller.manage.json", FORM)
    api.close()
    # Then it went over a new connection and succeeded: nothing ambiguous about it
    assert answer.status == 200
    assert peer.connections == 2


def test_chunked_and_gzip_answers_are_read_whole(peers: Callable[..., Peer]) -> None:
    # Given a peer answering once in chunks and once gzip-compressed
    def chunked(conn: socket.socket) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        conn.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n")
        halves = [SUCCESS[:7], SUCCESS[7:]]
        conn.sendall(b"".join(b"%x\r\n%s\r\n" % (len(h), h) for h in halves) + b"0\r\n\r\n")

    peer = peers([chunked, keep_alive(gzip.compress(SUCCESS), extra="Content-Encoding: gzip\r\n")])
    # When both are fetched
    api = transport(peer.url)
    bodies = [api.post_form("reseller.manage.json", FORM).data for _ in range(2)]
    api.close()
    # Then both bodies are the JSON document, on one kept connection
    assert bodies == [SUCCESS, SUCCESS]
    assert peer.connections == 1


def test_tls_with_a_trusted_certificate_posts_and_keeps_the_connection(
    peers: Callable[..., Peer], ca: trustme.CA
) -> None:
    # Given an HTTPS peer whose certificate the configured CA bundle trusts
    peer = peers([keep_alive(), keep_alive()], tls=server_context(ca))
    # When two POSTs are made
    api = transport(peer.url)
    answers = [api.post_form("reseller.manage.json", FORM) for _ in range(2)]
    api.close()
    # Then both are answered over one TLS connection
    assert [a.data for a in answers] == [SUCCESS, SUCCESS]
    assert peer.connections == 1


class ConnectProxy:
    """A forward proxy for CONNECT only: records each tunnel's target, then relays bytes."""

    def __init__(self) -> None:
        self.tunnels: list[str] = []
        self.client_closed = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(PEER_TIMEOUT_S)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve_one, daemon=True)
        self._thread.start()

    def _serve_one(self) -> None:
        try:
            client, _ = self._listener.accept()
        except OSError:
            return
        client.settimeout(PEER_TIMEOUT_S)
        head = b""
        while b"\r\n\r\n" not in head:
            head += client.recv(65536)
        target = head.split(b" ")[1].decode()
        self.tunnels.append(target)
        host, _, port = target.rpartition(":")
        upstream = socket.create_connection((host, int(port)), timeout=PEER_TIMEOUT_S)
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        relay = threading.Thread(target=_relay, args=(upstream, client), daemon=True)
        relay.start()
        _relay(client, upstream)
        self.client_closed.set()
        relay.join(PEER_TIMEOUT_S)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(PEER_TIMEOUT_S)


def _relay(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def test_https_through_the_environments_proxy_is_a_verified_tunnel(
    peers: Callable[..., Peer], ca: trustme.CA, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an HTTPS peer the CA bundle trusts, reached only through a CONNECT proxy that
    # https_proxy names
    peer = peers([keep_alive(), keep_alive()], tls=server_context(ca))
    proxy = ConnectProxy()
    monkeypatch.setenv("https_proxy", proxy.url)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    # When two POSTs are made
    api = transport(peer.url)
    answers = [api.post_form("reseller.manage.json", FORM) for _ in range(2)]
    # And the transport is closed
    api.close()
    # Then both went through one tunnel to the peer, over one verified TLS connection,
    # which the close ended
    assert [a.data for a in answers] == [SUCCESS, SUCCESS]
    assert proxy.tunnels == [peer.url.split("/")[2]]
    assert peer.connections == 1
    assert proxy.client_closed.wait(PEER_TIMEOUT_S)
    proxy.close()


@pytest.mark.timeout(30)
def test_a_tls_peer_that_never_answers_is_a_read_timeout(
    peers: Callable[..., Peer], ca: trustme.CA
) -> None:
    # Given an HTTPS peer that reads the request and holds the connection without answering
    done = threading.Event()
    peer = peers([lambda conn: done.wait(PEER_TIMEOUT_S)], tls=server_context(ca))
    api = transport(peer.url, timeout_s=SHORT_READ_TIMEOUT_S)
    # When a POST is made with a short read timeout
    with pytest.raises(ReadTimeoutError) as raised:
        api.post_form("reseller.manage.json", FORM)
    done.set()
    api.close()
    # Then it ends (TLS reads must not retry a timed-out read for ever), as an ambiguous call
    assert isinstance(classify_exception("manage.get", raised.value), AmbiguousError)


def test_an_untrusted_certificate_fails_before_sending_anything(
    peers: Callable[..., Peer], ca: trustme.CA
) -> None:
    # Given an HTTPS peer whose certificate comes from a CA nobody configured
    peer = peers([keep_alive()], tls=server_context(trustme.CA()))
    # When a POST is attempted
    api = transport(peer.url)
    with pytest.raises(SSLError) as raised:
        api.post_form("reseller.manage.json", FORM)
    api.close()
    # Then it is a transient TLS failure and the peer saw no request
    error = classify_exception("manage.get", raised.value)
    assert isinstance(error, TransientError)
    assert "TLS" in str(error)
    assert peer.requests == 0


def test_an_interim_1xx_answer_does_not_desynchronise_a_pooled_connection(
    peers: Callable[..., Peer],
) -> None:
    # Given a peer that sends 102 Processing and 103 Early Hints before its first answer,
    # and a final answer of its own to the second request, on one kept connection
    def interim_then(body: bytes) -> Answer:
        final = keep_alive(body)

        def answer(conn: socket.socket) -> None:
            conn.sendall(b"HTTP/1.1 102 Processing\r\n\r\n")
            conn.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
            final(conn)

        return answer

    first, second = b'{"message": "first"}', b'{"message": "second"}'
    peer = peers([interim_then(first), keep_alive(second)])
    # When two POSTs are made one after the other
    api = transport(peer.url)
    answers = [api.post_form("reseller.manage.json", FORM) for _ in range(2)]
    api.close()
    # Then each call gets its own final answer, over the one connection
    assert [(a.status, a.data) for a in answers] == [(200, first), (200, second)]
    assert peer.connections == 1


def test_a_call_in_flight_when_the_pool_closes_gets_its_answer_and_its_connection_goes(
    peers: Callable[..., Peer],
) -> None:
    # Given a peer that holds its first answer until the test lets it go (and would answer
    # a second request on the same connection, if one came)
    release = threading.Event()
    answer_when_released = keep_alive()
    held: Answer = lambda conn: (release.wait(PEER_TIMEOUT_S), answer_when_released(conn))  # noqa: E731
    peer = peers([held, keep_alive()])
    api = transport(peer.url)
    answers: list[int] = []
    caller = threading.Thread(
        target=lambda: answers.append(api.post_form("reseller.manage.json", FORM).status)
    )
    caller.start()
    wait_until(lambda: peer.requests == 1, message="the request to arrive")
    # When the transport is closed (the worker shutting down) with that call in flight
    api.close()
    release.set()
    caller.join(PEER_TIMEOUT_S)
    # Then the call still gets its answer, and the peer sees its connection closed
    assert answers == [200]
    wait_until(lambda: peer.closed_by_client == 1, message="the connection to be closed")


def test_a_call_beyond_the_pool_waits_no_longer_than_the_connect_timeout(
    peers: Callable[..., Peer],
) -> None:
    # Given a pool of one connection, held by a call whose answer the peer keeps back
    release = threading.Event()
    answer_when_released = keep_alive()
    held: Answer = lambda conn: (release.wait(PEER_TIMEOUT_S), answer_when_released(conn))  # noqa: E731
    peer = peers([held, keep_alive()])
    api = HttpTransport(
        peer.url, connect_timeout_s=SHORT_READ_TIMEOUT_S, timeout_s=PEER_TIMEOUT_S,
        pool_size=1, headers={},
    )  # fmt: skip
    first = threading.Thread(target=api.post_form, args=("reseller.manage.json", FORM))
    first.start()
    wait_until(lambda: peer.requests == 1, message="the first request to arrive")
    # When a second call finds no free connection within the connect timeout
    with pytest.raises(EmptyPoolError) as raised:
        api.post_form("reseller.manage.json", FORM)
    release.set()
    first.join(PEER_TIMEOUT_S)
    api.close()
    # Then it is transient (nothing was sent), and the peer saw only the first request
    assert isinstance(classify_exception("manage.get", raised.value), TransientError)
    assert peer.requests == 1
