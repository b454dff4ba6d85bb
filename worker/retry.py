"""Retry policy: immediate retries with tenacity, then the delayed tiers, then give up.

Immediate retries absorb blips (a dropped connection, one 503) without a round trip through
the broker; they are bounded by a small time budget so a message is never held for long
and a slow API cannot pin the pool. Anything longer goes through the TTL queues.
"""

from __future__ import annotations

import functools
from typing import Protocol

from tenacity import (
    RetryCallState,
    Retrying,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)
from tenacity.retry import retry_base
from tenacity.stop import stop_base

from worker.errors import TransientError

BACKOFF_MULTIPLIER_S = 0.1
BACKOFF_MAX_S = 2.0


def _retry_after_s(state: RetryCallState) -> float | None:
    outcome = state.outcome
    if outcome is None or not outcome.failed:
        return None
    exc = outcome.exception()
    return exc.retry_after_s if isinstance(exc, TransientError) else None


class _WaitHonouringRetryAfter:
    """Full-jitter exponential backoff, but never shorter than the API's Retry-After."""

    def __init__(self) -> None:
        self._jitter = wait_random_exponential(multiplier=BACKOFF_MULTIPLIER_S, max=BACKOFF_MAX_S)

    def __call__(self, state: RetryCallState) -> float:
        return max(self._jitter(state), _retry_after_s(state) or 0.0)


class _StopWhenRetryAfterExceeds(stop_base):
    """Stop early when the API asks for a pause longer than the whole immediate budget:
    that wait belongs on a delay queue, not on a pool thread."""

    def __init__(self, budget_s: float) -> None:
        self._budget_s = budget_s

    def __call__(self, state: RetryCallState) -> bool:
        retry_after = _retry_after_s(state)
        elapsed = state.seconds_since_start or 0.0
        return retry_after is not None and retry_after > self._budget_s - elapsed


class RetriedCall(Protocol):
    """What ``shared_retrying`` asks of the object whose bound method it calls."""

    def retries_now(self, error: BaseException) -> bool: ...

    def on_retry(self, state: RetryCallState) -> None: ...


class _AskTheCall(retry_base):
    """Retry as the call's own command says: the command lives on the object whose bound
    method is being retried, so one controller serves every command."""

    def __call__(self, state: RetryCallState) -> bool:
        outcome = state.outcome
        if outcome is None or not outcome.failed:
            return False
        error = outcome.exception()
        call: RetriedCall = state.fn.__self__  # type: ignore[union-attr]
        return error is not None and call.retries_now(error)


def _before_sleep(state: RetryCallState) -> None:
    call: RetriedCall = state.fn.__self__  # type: ignore[union-attr]
    call.on_retry(state)


@functools.lru_cache(maxsize=32)
def shared_retrying(attempts: int, budget_s: float) -> Retrying:
    """The tenacity controller of a command's immediate retries (re-raises the last error;
    which errors it retries is the outcome policy's answer for the call's command), built
    once per (attempts, budget) and shared by every thread: tenacity keeps each call's state
    thread-local, and building the controller (its stop and wait strategies) cost more than
    a successful call's whole retry bookkeeping. It must be called with a bound method of a
    ``RetriedCall``."""
    return Retrying(
        retry=_AskTheCall(),
        stop=(
            stop_after_attempt(max(1, attempts))
            | stop_after_delay(budget_s)
            | _StopWhenRetryAfterExceeds(budget_s)
        ),
        wait=_WaitHonouringRetryAfter(),
        before_sleep=_before_sleep,
        reraise=True,
    )


def next_delay_s(
    delayed_so_far: int, tiers_s: tuple[float, ...], retry_after_s: float | None = None
) -> float | None:
    """The delay tier for the next delayed retry, or None when every tier has been used.

    The tier grows with each delayed retry; a Retry-After longer than that tier picks the
    first tier long enough to honour it.
    """
    if delayed_so_far >= len(tiers_s):
        return None
    delay = tiers_s[delayed_so_far]
    if retry_after_s is not None and retry_after_s > delay:
        delay = next((t for t in tiers_s if t >= retry_after_s), tiers_s[-1])
    return delay
