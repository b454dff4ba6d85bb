"""The exception classes of a reseller API call: what the answer proves about the effect.

The API client maps every answer and every transport exception to one of these
(``worker/api/classify.py``); what then happens to the command is decided in one place,
``worker/outcomes.py``, from the class, the command and whether an earlier attempt of the
same key was uncertain:

- ``PermanentError``  the API refused the call with its documented error body: nothing was
  applied, and repeating it cannot help (it carries the ``ErrorCode`` of the refusal);
- ``TransientError``  nothing was applied (429, or the request never left: connection
  refused, connect timeout, TLS handshake); the same call may succeed later;
- ``AmbiguousError``  the API may have applied it: the request was sent and no complete
  answer came back, or the answer proves nothing (a 5xx from a gateway that may sit in front
  of an API that applied it, a body that is not the documented JSON).

Messages must be safe to log: no password, credential password or API key ever goes into
an exception's text (callers build them from field names and API messages only).
"""

from __future__ import annotations

from contracts.events import ErrorCode


class ProvisioningError(Exception):
    """Base of the API call's errors. ``str(exc)`` is safe to log."""

    def __init__(self, message: str, *, api_errors: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.api_errors = api_errors


class PermanentError(ProvisioningError):
    """The API refused the call; repeating it cannot help."""

    def __init__(self, code: ErrorCode, message: str, *, api_errors: tuple[str, ...] = ()) -> None:
        super().__init__(message, api_errors=api_errors)
        self.code = code


class TransientError(ProvisioningError):
    """The call was not applied (refused for now, or never sent); it may succeed later."""

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float | None = None,
        api_errors: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, api_errors=api_errors)
        self.retry_after_s = retry_after_s


class AmbiguousError(ProvisioningError):
    """The request was sent and the answer does not tell: the API may have applied it."""
