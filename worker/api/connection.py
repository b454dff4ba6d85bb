"""Keep-alive connections straight to the API's origin, with as few system calls as a POST needs.

Every system call lets go of the GIL, and under load a thread that let go waits for it back
behind the pool's other threads: at 50 ms API latency and 32 calls in flight each release
cost ~0.5 ms. urllib3 makes about nine per request (its check for a dropped connection, two
``settimeout`` calls, a poll before each of the two sends and before the read); a call then
took 57 ms seen from the worker against the sandbox's 51.5. Here a request makes three: a
zero-timeout poll of an idle connection, one ``sendall`` of the whole request, and the reads
of the answer (usually one). Over plain HTTP the timeouts are the kernel's (``SO_RCVTIMEO``/
``SO_SNDTIMEO`` on a blocking socket) rather than a poll before every operation; over TLS
they stay Python's (CPython's TLS layer retries a read the kernel timed out, for ever), which
costs a poll per read but still no ``settimeout`` per request. Measured against the sandbox
(plain HTTP): 54 ms per 50 ms call instead of 57, and +7 % commands/s at 50 ms, c32.

Failures are raised as urllib3's exception classes, so ``classify_exception`` keeps one
vocabulary for both this pool and the proxy path (urllib3's ``ProxyManager``): nothing sent
(``NewConnectionError``, ``ConnectTimeoutError``, ``SSLError``), no answer in time
(``ReadTimeoutError``), the connection lost before the answer ("Connection aborted.") or in
the middle of it ("Connection broken").
"""

from __future__ import annotations

import http.client
import io
import select
import socket
import ssl
import struct
import threading
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

from urllib3.exceptions import (
    ConnectTimeoutError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

NOT_A_POOL: Any = None  # urllib3's exceptions name the pool or connection; there is none here
READ_TIMEOUTS = (TimeoutError, BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)
DROPPED = select.POLLIN | select.POLLERR | select.POLLHUP  # an idle peer has nothing to say


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]  # case-insensitive
    body: bytes


class DirectPool:
    """POSTs to one origin (``http`` or ``https``) over reused connections; thread-safe."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout_s: float,
        timeout_s: float,
        maxsize: int,
        headers: Mapping[str, str],
        ca_certs: str,
    ) -> None:
        parts = urlsplit(base_url)
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        host = f"[{self._host}]" if ":" in self._host else self._host
        authority = f"{host}:{parts.port}" if parts.port else host
        self._head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": authority, **headers}.items())
        self._tls = ssl.create_default_context(cafile=ca_certs) if parts.scheme == "https" else None
        self._connect_timeout_s = connect_timeout_s
        self._timeout_s = timeout_s
        seconds = int(timeout_s)
        self._timeval = struct.pack("ll", seconds, int((timeout_s - seconds) * 1_000_000))
        self._maxsize = maxsize
        self._idle: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False

    def post(self, target: str, body: bytes) -> HttpResponse:
        """One POST of a form ``body`` to ``target`` (a path); the complete answer."""
        sock = self._checkout()
        request = f"POST {target} HTTP/1.1\r\n{self._head}Content-Length: {len(body)}\r\n\r\n"
        answering = False
        try:
            sock.sendall(request.encode("latin-1") + body)
            response = http.client.HTTPResponse(cast(socket.socket, _Reads(sock)), method="POST")
            response.begin()
            answering = True
            data = response.read()
        except Exception as exc:
            sock.close()
            raise _failure(exc, target, answering=answering) from None
        if response.will_close:
            sock.close()
        else:
            self._checkin(sock)
        headers = cast(Mapping[str, str], response.headers)
        return HttpResponse(response.status, headers, _decoded(data, headers))

    def close(self) -> None:
        """Close the idle connections; those in use close when their request is done."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for sock in idle:
            sock.close()

    def _checkout(self) -> socket.socket:
        while True:
            with self._lock:
                sock = self._idle.pop() if self._idle else None
            if sock is None:
                return self._connect()
            if not _dropped(sock):
                return sock
            sock.close()  # the server closed it while idle: a new one, nothing was sent

    def _checkin(self, sock: socket.socket) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self._maxsize:
                self._idle.append(sock)
                return
        sock.close()

    def _connect(self) -> socket.socket:
        address = (self._host, self._port)
        try:
            sock = socket.create_connection(address, timeout=self._connect_timeout_s)
        except TimeoutError:
            raise ConnectTimeoutError(f"connect to {self._host} timed out") from None
        except OSError as exc:
            raise self._cannot_connect(exc) from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_hostname=self._host)
                sock.settimeout(self._timeout_s)
            else:  # blocking, the kernel keeping the timeouts: no poll before each operation
                sock.settimeout(None)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, self._timeval)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, self._timeval)
        except ssl.SSLError as exc:
            sock.close()
            raise SSLError(f"TLS with {self._host} failed: {exc.reason}") from None
        except TimeoutError:
            sock.close()
            raise ConnectTimeoutError(f"TLS handshake with {self._host} timed out") from None
        except OSError as exc:
            sock.close()
            raise self._cannot_connect(exc) from None
        return sock

    def _cannot_connect(self, exc: OSError) -> NewConnectionError:
        reason = exc.strerror or type(exc).__name__
        return NewConnectionError(NOT_A_POOL, f"cannot connect to {self._host}: {reason}")


class _Reads:
    """What ``http.client.HTTPResponse`` reads the answer from."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(_SocketReader(self._sock))


class _SocketReader(io.RawIOBase):
    """The socket's bytes. The kernel's read timeout (EAGAIN on a blocking socket) is a
    timeout here; the standard library's reader would take it for "no data yet", and the
    answer for empty."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            return self._sock.recv_into(buffer)
        except BlockingIOError:
            raise TimeoutError("read timed out") from None


def _dropped(sock: socket.socket) -> bool:
    """An idle keep-alive connection the server closed (or wrote to) is not reused."""
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    poller = select.poll()
    poller.register(sock, DROPPED)
    return bool(poller.poll(0))


def _failure(exc: Exception, target: str, *, answering: bool) -> Exception:
    """urllib3's exception for what went wrong once the request was (being) sent."""
    if isinstance(exc, READ_TIMEOUTS):
        return ReadTimeoutError(NOT_A_POOL, target, "read timed out")
    if answering or isinstance(exc, http.client.IncompleteRead):
        return ProtocolError(f"Connection broken: {type(exc).__name__}", exc)
    return ProtocolError("Connection aborted.", exc)


def _decoded(data: bytes, headers: Mapping[str, str]) -> bytes:
    # Nothing asks for compression; a server that compresses anyway is still understood.
    encoding = (headers.get("Content-Encoding") or "").strip().lower()
    if encoding in ("gzip", "x-gzip", "deflate"):
        try:
            return zlib.decompress(data, zlib.MAX_WBITS | 32)  # gzip or zlib, by the header
        except zlib.error as exc:
            raise ProtocolError("Connection broken: undecodable body", exc) from None
    return data
