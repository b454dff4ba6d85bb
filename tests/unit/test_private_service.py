"""The servers of a test's own come up as context managers, and never stay behind."""

from __future__ import annotations

import pytest

from tests.fixtures.private_service import PrivateService


class Service(PrivateService):
    def __init__(self, fails: bool) -> None:
        self.fails, self.up, self.closed = fails, False, 0

    def bring_up(self) -> None:
        if self.fails:
            raise RuntimeError("the node did not boot")
        self.up = True

    def close(self) -> None:
        self.closed += 1


def test_a_service_that_fails_to_come_up_is_closed_and_the_error_goes_on() -> None:
    # Given a service whose start fails half-way
    service = Service(fails=True)
    # When it is entered / Then the start's error reaches the test, after one close
    with pytest.raises(RuntimeError, match="did not boot"), service:
        pytest.fail("the block must not run")
    assert service.closed == 1


def test_a_service_that_came_up_is_closed_once_when_the_block_ends() -> None:
    # Given a service that starts / When the block using it ends
    with Service(fails=False) as service:
        assert service.up and service.closed == 0
    # Then it was closed once
    assert service.closed == 1
