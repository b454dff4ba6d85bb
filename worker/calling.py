"""Calling the API for one command: immediate retries, read-back, and the resolve budget.

``call_command`` makes the call until it succeeds, fails permanently, or runs out of
immediate retries (then the caller sends it to a delay tier). After an ambiguous outcome
(or a crash that may have left the effect applied) the command is resolved before it is
sent again: a read-back where the API's state tells (``worker.readback``), or the repeat's
"already exists"/"not found" taken for the success it really is.

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
from worker.errors import AmbiguousError, PermanentError, TransientError
from worker.readback import check_applied, has_check, needs_resolution, tolerate_after_ambiguity
from worker.retry import immediate_retrying

RESOLVE_ATTEMPTS = 1000  # the resolve budget (seconds) is the real bound


def call_command(
    client: Any,
    command: Command,
    *,
    resolve_first: bool,
    retries: int,
    retry_budget_s: float,
    resolve_budget_s: float,
    on_retry: Callable[[Any], None],
) -> Any:
    """The call's result; raises the last error once retrying here is over."""
    ambiguous = resolve_first and needs_resolution(command)
    # "unresolved": the effect may be in place and no read-back has said otherwise since.
    state = {"ambiguous": ambiguous, "unresolved": ambiguous}

    def attempt() -> Any:
        try:
            if state["ambiguous"] and has_check(command):
                if check_applied(client, command):
                    return None
                state["unresolved"] = False
            return client.execute(command)
        except AmbiguousError:
            state["ambiguous"] = state["unresolved"] = needs_resolution(command)
            raise
        except PermanentError as exc:
            if state["ambiguous"] and tolerate_after_ambiguity(client, command, exc):
                return None
            raise

    try:
        return immediate_retrying(retries, retry_budget_s, on_retry)(attempt)
    except (TransientError, AmbiguousError):
        if not state["unresolved"]:
            raise
    return immediate_retrying(RESOLVE_ATTEMPTS, resolve_budget_s, on_retry)(attempt)
