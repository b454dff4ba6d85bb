"""Readiness follows what the broker did: the reason, and a trace of short outages."""

from __future__ import annotations

from worker.observability.health import Health


def ready_health() -> Health:
    health = Health(stall_after_s=60, clock=lambda: 0.0)
    health.set_connected(True)
    health.set_consuming(True)
    return health


def test_a_lost_channel_makes_it_unready_with_the_reason_and_leaves_a_trace() -> None:
    health = ready_health()
    health.set_consuming(False, "channel closed by the broker: (404, 'NOT_FOUND')")
    assert health.ready() == (
        False,
        "not consuming: channel closed by the broker: (404, 'NOT_FOUND')",
    )
    health.set_consuming(True)
    assert health.ready()[0]
    snapshot = health.snapshot()
    assert snapshot["unready_episodes"] == 1
    assert "404" in snapshot["last_unready_reason"]


def test_a_blocked_connection_is_unready_until_unblocked() -> None:
    health = ready_health()
    health.set_blocked(True, "low on memory")
    assert health.ready() == (False, "broker blocked the connection: low on memory")
    assert health.snapshot()["blocked"] is True
    health.set_blocked(False)
    assert health.ready() == (True, "connected and consuming")
    assert health.snapshot()["unready_episodes"] == 1
