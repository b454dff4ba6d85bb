"""One small HTTP server for the operators: ``/metrics``, ``/healthz``, ``/readyz``.

``ObservabilityServer(host, port, metrics, health)``: ``start()`` binds (port 0 picks a free
one, then readable as ``.port``) and serves on a daemon thread; ``stop()`` closes it.

- ``GET /metrics``: Prometheus text (``text/plain; version=0.0.4``).
- ``GET /healthz``: 200 while the consumer loop ticks (broker outages do not matter), else 503.
- ``GET /readyz``: 200 when live, connected and consuming, else 503.
  Both answer a small JSON body: ``{"status": "ok"|"fail", "reason": ..., **snapshot}``.
- Anything else: 404. A failure inside a handler answers 500 with a one-line JSON body and is
  logged; no traceback ever reaches a response.

Responses are HTTP/1.1, buffered and written in one piece.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol


class MetricsSource(Protocol):
    def render(self) -> bytes: ...


class HealthSource(Protocol):
    """``Health`` for one worker process; ``Children`` for the supervisor's processes."""

    def live(self) -> tuple[bool, str]: ...

    def ready(self) -> tuple[bool, str]: ...

    def snapshot(self) -> dict[str, Any]: ...


log = logging.getLogger(__name__)

JSON_TYPE = "application/json"
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
RESPONSE_BUFFER_BYTES = 1 << 18  # a whole /metrics page fits: one write per response
IDLE_CONNECTION_TIMEOUT_S = 10.0  # drops keep-alive connections a scraper left open
STOP_TIMEOUT_S = 5.0
SHUTDOWN_POLL_S = 0.1  # how soon stop() is noticed; serve_forever's default is 0.5 s


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # an idle keep-alive connection must not hold up stop()
    metrics: MetricsSource
    health: HealthSource

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.warning("observability request failed", exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = RESPONSE_BUFFER_BYTES
    timeout = IDLE_CONNECTION_TIMEOUT_S
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        try:
            status, content_type, body = self._route(path)
        except Exception:  # the reason goes to the log, never to the client
            log.exception("observability endpoint failed", extra={"fields": {"path": path}})
            status, content_type, body = 500, JSON_TYPE, b'{"status": "error"}\n'
        self._respond(status, content_type, body)

    def _route(self, path: str) -> tuple[int, str, bytes]:
        if path == "/metrics":
            return 200, METRICS_TYPE, self.server.metrics.render()
        if path == "/healthz":
            return _probe(*self.server.health.live(), self.server.health)
        if path == "/readyz":
            return _probe(*self.server.health.ready(), self.server.health)
        return 404, JSON_TYPE, b'{"status": "not found"}\n'

    def _respond(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # Probes every few seconds would drown the JSON log; access lines are not needed.
        return


def _probe(ok: bool, reason: str, health: HealthSource) -> tuple[int, str, bytes]:
    body = {"status": "ok" if ok else "fail", "reason": reason, **health.snapshot()}
    return (200 if ok else 503), JSON_TYPE, (json.dumps(body) + "\n").encode()


class ObservabilityServer:
    def __init__(self, host: str, port: int, metrics: MetricsSource, health: HealthSource) -> None:
        self._host, self.port = host, port
        self._metrics, self._health = metrics, health
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        server = _Server((self._host, self.port), _Handler)
        server.metrics, server.health = self._metrics, self._health
        self.port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            args=(SHUTDOWN_POLL_S,),
            name="observability-http",
            daemon=True,
        )
        self._thread.start()
        log.info("observability server listening", extra={"fields": {"port": self.port}})

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_S)
        self._server, self._thread = None, None
