"""The probes and metrics over real HTTP on 127.0.0.1, with an injected clock."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator

import pytest

from worker.observability.health import Health
from worker.observability.http import ObservabilityServer
from worker.observability.metrics import Metrics

STALL_AFTER_S = 30.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def health(clock: FakeClock) -> Health:
    return Health(STALL_AFTER_S, clock=clock)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def server(metrics: Metrics, health: Health) -> Iterator[ObservabilityServer]:
    srv = ObservabilityServer("127.0.0.1", 0, metrics, health)
    srv.start()
    yield srv
    srv.stop()


def get(server: ObservabilityServer, path: str) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type") or "", resp.read()
    finally:
        conn.close()


def consuming(health: Health) -> None:
    health.set_connected(True)
    health.set_consuming(True)
    health.tick()


def test_port_zero_picks_a_free_port(server: ObservabilityServer) -> None:
    assert server.port > 0


def test_metrics_endpoint_serves_prometheus_text(
    server: ObservabilityServer, metrics: Metrics
) -> None:
    # Given a finished command
    metrics.command_finished("EnableCustomer", "succeeded", 0.01)
    # When /metrics is scraped
    status, ctype, body = get(server, "/metrics")
    # Then it is the Prometheus text format with the counter
    assert status == 200
    assert ctype.startswith("text/plain; version=0.0.4")
    text = body.decode()
    assert 'provisioner_commands_total{command_type="EnableCustomer",outcome="succeeded"} 1.0' in (
        text
    )


def test_ready_and_live_when_connected_and_consuming(
    server: ObservabilityServer, health: Health
) -> None:
    # Given a consuming worker
    consuming(health)
    # Then both probes answer 200 with a JSON body
    for path in ("/healthz", "/readyz"):
        status, ctype, body = get(server, path)
        assert status == 200, path
        assert ctype == "application/json"
        assert json.loads(body)["status"] == "ok"


def test_broker_down_keeps_liveness_but_fails_readiness(
    server: ObservabilityServer, health: Health
) -> None:
    # Given a consuming worker
    consuming(health)
    # When the broker connection drops while the loop keeps ticking
    health.set_connected(False)
    health.set_consuming(False)
    health.tick()
    # Then liveness stays 200 and readiness says why it is 503
    assert get(server, "/healthz")[0] == 200
    status, _, body = get(server, "/readyz")
    assert status == 503
    payload = json.loads(body)
    assert payload["status"] == "fail"
    assert "not connected" in payload["reason"]
    assert payload["connected"] is False


def test_connected_but_not_consuming_is_not_ready(
    server: ObservabilityServer, health: Health
) -> None:
    # Given a connection whose consumer was cancelled
    consuming(health)
    health.set_consuming(False)
    # Then readiness fails naming the reason
    status, _, body = get(server, "/readyz")
    assert status == 503
    assert json.loads(body)["reason"] == "not consuming"


def test_liveness_fails_when_the_loop_stops_ticking(
    server: ObservabilityServer, health: Health, clock: FakeClock
) -> None:
    # Given a consuming worker
    consuming(health)
    # When the loop stops ticking for longer than the stall limit
    clock.now += STALL_AFTER_S + 1
    # Then both probes fail with the stall as the reason
    status, _, body = get(server, "/healthz")
    assert status == 503
    assert "stalled" in json.loads(body)["reason"]
    assert get(server, "/readyz")[0] == 503
    # And one more tick brings it back
    health.tick()
    assert get(server, "/healthz")[0] == 200


def test_liveness_just_under_the_limit_is_still_ok(health: Health, clock: FakeClock) -> None:
    # Given a tick, then almost the whole stall window
    health.tick()
    clock.now += STALL_AFTER_S
    # Then the worker still counts as live
    assert health.live()[0] is True


def test_unknown_path_is_404(server: ObservabilityServer) -> None:
    assert get(server, "/nope")[0] == 404
    assert get(server, "/metrics/../etc")[0] == 404


def test_query_string_is_ignored(server: ObservabilityServer, health: Health) -> None:
    consuming(health)
    assert get(server, "/healthz?verbose=1")[0] == 200


def test_handler_failure_answers_500_without_a_traceback(
    server: ObservabilityServer, metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a metrics render that blows up with a secret in its message
    def boom() -> bytes:
        raise RuntimeError("Traceback password=hunter22")

    monkeypatch.setattr(metrics, "render", boom)
    # When scraped
    status, _, body = get(server, "/metrics")
    # Then the client sees a plain 500 and nothing of the exception
    assert status == 500
    assert b"hunter22" not in body
    assert b"Traceback" not in body


def test_keep_alive_connection_serves_several_requests(
    server: ObservabilityServer, health: Health
) -> None:
    # Given one HTTP/1.1 connection
    consuming(health)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        # When it asks twice
        for path in ("/healthz", "/metrics"):
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            # Then both are answered on the same connection
            assert resp.status == 200
            assert resp.version == 11
    finally:
        conn.close()


def test_stop_with_an_idle_keep_alive_connection_returns(metrics: Metrics, health: Health) -> None:
    # Given a server with a client connection left open
    srv = ObservabilityServer("127.0.0.1", 0, metrics, health)
    srv.start()
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    conn.request("GET", "/healthz")
    conn.getresponse().read()
    # When it stops
    srv.stop()
    conn.close()
    # Then the port no longer accepts connections
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", srv.port), timeout=5).close()


def test_snapshot_reports_state(health: Health, clock: FakeClock) -> None:
    # Given a tick 2.5 s ago on a connected, not consuming worker
    health.tick()
    health.set_connected(True)
    clock.now += 2.5
    # Then the snapshot says so
    snap = health.snapshot()
    assert snap["connected"] is True
    assert snap["consuming"] is False
    assert snap["seconds_since_tick"] == 2.5
