"""The exception taxonomy that decides every outcome of a command.

Every failure the worker can meet is mapped to exactly one of these, in one place per
source (the API client's response classification, the contracts' validation), and the
worker decides what happens to the message from the class alone:

- ``PermanentError``  -> ``CommandFailed`` event + dead-letter entry, never retried
- ``TransientError``  -> immediate retries, then delayed retries, then dead-letter
- ``AmbiguousError``  -> the API may have applied it: read back before retrying
- ``contracts.InvalidCommand`` -> ``CommandRejected`` + dead-letter entry, no API call

Messages must be safe to log: no password, credential password or API key ever goes into
an exception's text (callers build them from field names and API messages only).
"""

from __future__ import annotations

from contracts.events import ErrorCode


class ProvisioningError(Exception):
    """Base of every outcome-deciding error. ``str(exc)`` is safe to log."""

    code: ErrorCode = ErrorCode.API_REJECTED
    retryable: bool = False

    def __init__(self, message: str, *, api_errors: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.api_errors = api_errors


class PermanentError(ProvisioningError):
    """The API refused the call; repeating it cannot help."""

    retryable = False

    def __init__(self, code: ErrorCode, message: str, *, api_errors: tuple[str, ...] = ()) -> None:
        super().__init__(message, api_errors=api_errors)
        self.code = code


class TransientError(ProvisioningError):
    """The call did not happen (or was refused for now); the same call may succeed later."""

    code = ErrorCode.RETRIES_EXHAUSTED
    retryable = True

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
    """The request was sent but no answer came back: the API may have applied it."""

    code = ErrorCode.RETRIES_EXHAUSTED
    retryable = True
