"""The retry policy: bounded immediate retries honouring Retry-After, then delay tiers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from tenacity import RetryCallState

from contracts import ErrorCode
from worker import retry
from worker.errors import AmbiguousError, PermanentError, TransientError
from worker.outcomes import retries_now


class Call:
    """A ``RetriedCall`` around ``fn`` with no command: the outcome policy's general answer."""

    def __init__(
        self, fn: Callable[[], Any], on_retry: Callable[[RetryCallState], Any] | None = None
    ) -> None:
        self._fn, self._on_retry = fn, on_retry

    def attempt(self) -> Any:
        return self._fn()

    def retries_now(self, error: BaseException) -> bool:
        return retries_now(error, None)

    def on_retry(self, state: RetryCallState) -> None:
        if self._on_retry is not None:
            self._on_retry(state)


def immediately(
    attempts: int,
    budget_s: float,
    fn: Callable[[], Any],
    on_retry: Callable[[RetryCallState], Any] | None = None,
) -> Any:
    return retry.shared_retrying(attempts, budget_s)(Call(fn, on_retry).attempt)


@pytest.fixture(autouse=True)
def no_real_waiting(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr("tenacity.nap.time.sleep", slept.append)
    return slept


def test_transient_then_success_is_retried_immediately(no_real_waiting: list[float]) -> None:
    # Given a call that fails twice with a transient error
    failures = iter([TransientError("503"), AmbiguousError("timeout")])
    seen: list[RetryCallState] = []

    def call() -> str:
        exc = next(failures, None)
        if exc:
            raise exc
        return "ok"

    # When it runs under the immediate policy
    result = immediately(3, 5.0, call, on_retry=seen.append)
    # Then it succeeds after two retries with bounded backoff
    assert result == "ok"
    assert len(seen) == 2
    assert all(0 <= s <= retry.BACKOFF_MAX_S for s in no_real_waiting)


def test_permanent_errors_are_never_retried() -> None:
    calls = []

    def call() -> None:
        calls.append(1)
        raise PermanentError(ErrorCode.API_REJECTED, "no")

    with pytest.raises(PermanentError):
        immediately(5, 5.0, call)
    assert calls == [1]


def test_retry_after_is_honoured_within_budget(no_real_waiting: list[float]) -> None:
    attempts = iter([TransientError("429", retry_after_s=1.5)])

    def call() -> str:
        exc = next(attempts, None)
        if exc:
            raise exc
        return "ok"

    assert immediately(3, 5.0, call) == "ok"
    assert no_real_waiting and no_real_waiting[0] >= 1.5


def test_retry_after_longer_than_budget_goes_to_the_delay_queue() -> None:
    calls = []

    def call() -> None:
        calls.append(1)
        raise TransientError("429", retry_after_s=60)

    with pytest.raises(TransientError):
        immediately(3, 5.0, call)
    assert calls == [1]


def test_attempts_are_bounded(no_real_waiting: list[float]) -> None:
    calls = []

    def call() -> None:
        calls.append(1)
        raise TransientError("503")

    with pytest.raises(TransientError):
        immediately(3, 5.0, call)
    assert len(calls) == 3


@pytest.mark.parametrize(
    ("so_far", "retry_after", "expected"),
    [
        (0, None, 30.0),
        (1, None, 120.0),
        (3, None, 3600.0),
        (4, None, None),
        (0, 100.0, 120.0),
        (0, 99999.0, 3600.0),
    ],
)
def test_next_delay_tier(so_far: int, retry_after: float | None, expected: float | None) -> None:
    tiers = (30.0, 120.0, 600.0, 3600.0)
    assert retry.next_delay_s(so_far, tiers, retry_after) == expected
