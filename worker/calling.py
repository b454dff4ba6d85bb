"""Calling the API for one command: immediate retries, read-back, and the resolve budget.

``CommandCall.run`` makes the call until it succeeds, fails permanently, or runs out of
immediate retries (then the caller sends it to a delay tier). What each error means is the
outcome policy's answer (``worker.outcomes``). Once the effect may be in place (an earlier
attempt of this key ended uncertain, or this one met an ambiguous answer) the command is
resolved before it is sent again: a read-back where the API's state tells
(``worker.readback``), or the repeat's "already exists"/"not found" confirmed as our own.
``uncertain`` then stays set, for the store to record with the outcome.

A command whose effect may be in place and that no read-back has settled is not handed to
a delay tier after the immediate retries: there the customer's later commands would run
first and could make the resolution wrong (an ``AddCredential`` repeated after the
``DeleteCredential`` that followed it adds the credential twice). It keeps retrying on its
thread, which holds the customer's queue, for up to ``resolve_budget_s``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from contracts import Command
from worker.errors import PermanentError, ProvisioningError
from worker.outcomes import (
    Disposition,
    is_naturally_idempotent,
    may_have_applied,
    of_error,
    retries_now,
)
from worker.readback import collision_is_ours, has_read_back, is_applied
from worker.retry import shared_retrying

RESOLVE_ATTEMPTS = 1000  # the resolve budget (seconds) is the real bound


class CommandCall:
    """One command's call and its retries; ``uncertain`` tells, after ``run``, whether an
    attempt (this execution's or an earlier one) may have applied it unseen."""

    def __init__(
        self,
        client: Any,
        command: Command,
        *,
        uncertain: bool,
        retries: int,
        retry_budget_s: float,
        resolve_budget_s: float,
        on_retry: Callable[[Any], None],
    ) -> None:
        self._client, self._command = client, command
        self._retries, self._retry_budget_s = retries, retry_budget_s
        self._resolve_budget_s, self._on_retry = resolve_budget_s, on_retry
        self.uncertain = uncertain and not is_naturally_idempotent(command)
        # The effect may be in place and no read-back has said otherwise since.
        self._unresolved = self.uncertain

    def run(self) -> Any:
        """The call's result; raises the last error once retrying here is over."""
        try:
            return self._retrying(self._retries, self._retry_budget_s)(self._attempt)
        except ProvisioningError as exc:
            if not (self._unresolved and retries_now(exc, self._command)):
                raise
        return self._retrying(RESOLVE_ATTEMPTS, self._resolve_budget_s)(self._attempt)

    def _retrying(self, attempts: int, budget_s: float) -> Any:
        return shared_retrying(attempts, budget_s)

    # -- what the shared retry controller asks (worker.retry.RetriedCall) -----------------

    def retries_now(self, error: BaseException) -> bool:
        return retries_now(error, self._command)

    def on_retry(self, state: Any) -> None:
        self._on_retry(state)

    def _attempt(self) -> Any:
        command = self._command
        if self._unresolved and has_read_back(command):
            if is_applied(self._client, command):
                return None
            self._unresolved = False
        try:
            return self._client.execute(command)
        except PermanentError as exc:
            verdict = of_error(exc, command, uncertain=self.uncertain)
            if verdict.outcome is Disposition.RESOLVE and collision_is_ours(
                self._client, command, exc
            ):
                return None
            raise
        except ProvisioningError as exc:
            if may_have_applied(exc, command):
                self.uncertain = self._unresolved = True
            raise
