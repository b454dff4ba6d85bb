"""The sandbox in-process: its state and faults, authentication, applying a call, and the
server's start and stop. The HTTP side (routing, bodies, faults on the wire) is
``sandbox.handler``.
"""

from __future__ import annotations

import contextlib
import hmac
import socket
import threading
from pathlib import Path
from typing import Any

from sandbox.calls import handle_call
from sandbox.control import CONTROL_PREFIX
from sandbox.faults import Faults, FaultSettings
from sandbox.handler import SandboxHTTPServer
from sandbox.protocol import ApiError, Params, Reply
from sandbox.remote import ControlClient
from sandbox.state import SandboxState

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8025
DEFAULT_API_USER = "sandbox"
DEFAULT_API_KEY = "sandbox-key"

SHUTDOWN_POLL_S = 0.1


class SandboxServer(ControlClient):
    """The sandbox in-process: binds at construction, ``start()`` serves in a daemon thread.

    ``state`` (customers, counts, log), ``faults`` are live objects for direct assertions.
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = 0,
        api_user: str = DEFAULT_API_USER,
        api_key: str = DEFAULT_API_KEY,
        state_file: str | Path | None = None,
        faults: FaultSettings | None = None,
    ) -> None:
        self.api_user = api_user
        self.api_key = api_key
        self.faults = Faults(faults)
        self.state = SandboxState(state_file)
        try:
            self._httpd = SandboxHTTPServer((host, port), self)
        except OSError:
            self.state.close()
            raise
        self.host = host
        self.port: int = self._httpd.server_port
        base = f"http://{host}:{self.port}"
        self.url = f"{base}/apiv2/"
        self.distributor_url = f"{base}/api/"
        self.control_url = f"{base}{CONTROL_PREFIX}"
        self._thread: threading.Thread | None = None

    def authenticates(self, params: Params) -> bool:
        user, key = params.get("api_user") or "", params.get("api_key") or ""
        user_ok = hmac.compare_digest(user.encode(), self.api_user.encode())
        return hmac.compare_digest(key.encode(), self.api_key.encode()) and user_ok

    def apply(self, call: str, key: str, params: Params) -> Reply:
        """Run the call's handler atomically; count it as applied when it succeeded."""
        with self.state.lock:
            try:
                reply = handle_call(self.state, call, params)
            except ApiError as exc:
                return exc.reply
            self.state.count_applied(call)
            if key != call:
                self.state.count_applied(key)
            return reply

    @property
    def calls(self) -> dict[str, int]:
        with self.state.lock:
            return dict(self.state.calls)

    @property
    def log(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return list(self.state.log)

    def start(self) -> SandboxServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(SHUTDOWN_POLL_S,), name="sandbox", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop open keep-alive connections, close the state file."""
        self._httpd.stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        with self._httpd.tracking_lock:
            for connection in list(self._httpd.connections):
                with contextlib.suppress(OSError):  # already closed by its client
                    connection.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()
        with self.state.lock:
            self.state.close()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
