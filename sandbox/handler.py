"""The sandbox's HTTP side: connections, request bodies, routing, faults, one write per response.

``http.server`` answers keep-alive requests at ~23/s when a response leaves in two writes
(Nagle's algorithm meets the client's delayed ACK), so every reply is built as one bytes
object and written once, and TCP_NODELAY is set on every connection.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import socketserver
import struct
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from sandbox.calls import CALLS
from sandbox.control import CONTROL_PREFIX, handle_control
from sandbox.faults import Fault, Faults
from sandbox.protocol import (
    AUTH_FAILED,
    GARBLED_BODY,
    INTERNAL_ERROR,
    TOO_MANY_REQUESTS,
    ApiError,
    Params,
    Reply,
    encode_reply,
    error_reply,
    format_seconds,
    parse_params,
)
from sandbox.state import SandboxState

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
IDLE_CONNECTION_TIMEOUT_S = 300.0
LISTEN_BACKLOG = 256
# apiv2: /apiv2/reseller.<call>.<format>; distributor: /api/distributor.<call>.<format>
ROUTE_RE = re.compile(r"^/(?:apiv2/reseller|api/distributor)\.([A-Za-z]+)\.([A-Za-z]+)$")


class Sandbox(Protocol):
    """What the HTTP side asks of the sandbox (``sandbox.server.SandboxServer``)."""

    state: SandboxState
    faults: Faults

    def authenticates(self, params: Params) -> bool: ...

    def apply(self, call: str, key: str, params: Params) -> Reply: ...


class SandboxHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address: tuple[str, int], sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.connections: set[socket.socket] = set()
        self.resets: set[socket.socket] = set()
        self.tracking_lock = threading.Lock()
        self.stopping = threading.Event()
        super().__init__(address, SandboxHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall on reverse DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def shutdown_request(self, request: Any) -> None:
        with self.tracking_lock:
            reset = request in self.resets
            self.resets.discard(request)
        if reset:
            self.close_request(request)  # no FIN first: SO_LINGER 0 makes the close an RST
        else:
            super().shutdown_request(request)


class SandboxHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_CONNECTION_TIMEOUT_S
    server: SandboxHTTPServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.tracking_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.tracking_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):  # the client went away: nothing left to flush
            super().finish()

    def parse_request(self) -> bool:
        # Called as soon as the request line is in: the latency counts from here.
        self.arrived_at = time.monotonic()
        return super().parse_request()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # request logging would cost more than the request itself

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # Malformed request lines and unsupported methods get the documented JSON shape too.
        self.close_connection = True
        self.send_reply(error_reply(code, message or HTTPStatus(code).phrase))

    def send_reply(self, reply: Reply) -> None:
        try:
            self.wfile.write(encode_reply(reply, self.close_connection))
        except OSError:
            self.close_connection = True  # the client gave up (e.g. timed out during a hang)

    def do_GET(self) -> None:
        self.dispatch()

    def do_POST(self) -> None:
        self.dispatch()

    def do_DELETE(self) -> None:
        self.dispatch()

    def dispatch(self) -> None:
        try:
            body = self.read_body()
            path, _, query = self.path.partition("?")
            sandbox = self.server.sandbox
            if path.startswith(CONTROL_PREFIX):
                self.send_reply(
                    handle_control(sandbox.state, sandbox.faults, self.command, path, body)
                )
            else:
                self.serve_api(path, parse_params(query, body))
        except ApiError as exc:
            self.send_reply(exc.reply)
        except Exception:
            log.exception("sandbox: unexpected error answering %s", self.command)
            self.close_connection = True
            self.send_reply(error_reply(500, INTERNAL_ERROR))

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            raise ApiError(
                error_reply(411, "chunked bodies are not supported: send Content-Length")
            )
        raw = self.headers.get("Content-Length", "0") or "0"
        if not raw.isdigit():
            self.close_connection = True
            raise ApiError(error_reply(400, "Content-Length must be a number"))
        length = int(raw)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise ApiError(error_reply(413, f"body larger than {MAX_BODY_BYTES} bytes"))
        return self.rfile.read(length) if length else b""

    def serve_api(self, path: str, params: Params) -> None:
        match = ROUTE_RE.match(path)
        if match is None or match.group(1) not in CALLS:
            raise ApiError(error_reply(404, f"unknown API call {path[:100]}"))
        call, fmt = match.groups()
        if fmt != "json":
            raise ApiError(error_reply(400, "only .json endpoints are supported by the sandbox"))
        sandbox = self.server.sandbox
        if not sandbox.authenticates(params):
            raise ApiError(error_reply(401, AUTH_FAILED))
        operation = params.operation()
        key = f"{call}/{operation}" if operation else call
        with sandbox.state.lock:
            sandbox.state.count_call(call)
            if operation:
                sandbox.state.count_call(key)
        # An API with 50 ms of latency answers 50 ms after the request arrived: reading and
        # parsing it take part of that time rather than adding to it.
        left = self.arrived_at + sandbox.faults.latency_s - time.monotonic()
        if left > 0:
            self.server.stopping.wait(left)
        fault = sandbox.faults.decide(call, operation)
        if fault is not None and fault.kind in ("5xx", "429"):
            self.send_reply(self.refusal(fault))
            return
        reply = sandbox.apply(call, key, params)
        self.deliver(reply, fault)

    def refusal(self, fault: Fault) -> Reply:
        if fault.kind == "429":
            retry_after = format_seconds(self.server.sandbox.faults.settings.retry_after_s)
            return error_reply(429, TOO_MANY_REQUESTS, headers={"Retry-After": retry_after})
        return error_reply(fault.status, "Service unavailable (injected fault)")

    def deliver(self, reply: Reply, fault: Fault | None) -> None:
        """Send the reply of an applied call, unless a hang or reset fault says otherwise."""
        if fault is not None and fault.kind == "reset":
            self.close_connection = True
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with self.server.tracking_lock:
                self.server.resets.add(self.connection)
            return
        if fault is not None and fault.kind == "hang":
            self.server.stopping.wait(self.server.sandbox.faults.settings.hang_s)
        if fault is not None and fault.kind == "applied_5xx":
            reply = error_reply(fault.status, "Bad gateway (injected after applying)")
        if fault is not None and fault.kind == "applied_garbled":
            reply = Reply(200, GARBLED_BODY)
        self.send_reply(reply)
