"""What the liveness thread renews: the keys and customers of the calls in flight."""

from __future__ import annotations

from worker.leases import HeldLeases


def test_held_leases_are_those_of_the_calls_still_running() -> None:
    # Given two calls of one customer's commands in flight at once, and a third alone
    leases = HeldLeases()
    with leases.holding("k1", "ada"), leases.holding("k2", "ada"):
        with leases.holding("k3", None):
            # Then all of them are renewed, the customer once
            assert leases.snapshot() == (["k1", "k2", "k3"], ["ada"])
        # When the third returns / Then its key is no longer renewed
        assert leases.snapshot() == (["k1", "k2"], ["ada"])
    # And once every call returned, nothing is
    assert leases.snapshot() == ([], [])


def test_a_call_that_raises_gives_its_leases_up_too() -> None:
    leases = HeldLeases()
    try:
        with leases.holding("k1", "ada"):
            raise RuntimeError("the call failed")
    except RuntimeError:
        pass
    assert leases.snapshot() == ([], [])
