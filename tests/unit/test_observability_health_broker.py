"""Readiness follows what the broker did: the reason, and a trace of short outages."""

from __future__ import annotations

from worker.observability.health import Downtime, Health


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


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_part_down_past_its_grace_makes_it_unready_naming_the_part_and_why() -> None:
    # Given a ready worker whose sequencer is watched with a 5 s grace
    clock = Clock()
    intake = Downtime(5.0, clock=clock)
    health = ready_health()
    health.add_check("sequencer", lambda: intake.problem("intake not consumed"))
    # When the part goes down, first briefly (a reconnection), then for longer
    intake.down("channel closed by the broker: (406, 'PRECONDITION_FAILED')")
    clock.now += 4.9
    assert health.ready() == (True, "connected and consuming")
    intake.down()  # a later turn, still down: the first reason and time stay
    clock.now += 0.2
    # Then it is unready past the grace, with the part, the time and the reason
    ready, reason = health.ready()
    assert not ready
    assert reason == "sequencer: intake not consumed for 5s: channel closed by the broker: " + (
        "(406, 'PRECONDITION_FAILED')"
    )
    assert health.snapshot()["checks"] == {"sequencer": reason.removeprefix("sequencer: ")}
    # And ready again as soon as the part is back
    intake.up()
    assert health.ready()[0] and health.snapshot()["checks"] == {"sequencer": "ok"}


def test_the_broker_reason_comes_before_a_parts() -> None:
    # Given a part that is not well, and a channel that is lost
    health = ready_health()
    health.add_check("partitions", lambda: "owned partitions not consumed")
    health.set_consuming(False, "channel closed")
    # When readiness is asked / Then the broker's reason is given
    assert health.ready() == (False, "not consuming: channel closed")
