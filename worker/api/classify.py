"""Every response or exception of a reseller API call -> exactly one outcome, in one place.

The vocabulary is the table at the end of docs/architecture.md: the body decides first, the
status second. Only an answer that proves nothing was applied is permanent (the documented error
body) or transient (429, a request that never left). Everything else that is not the documented
success is ambiguous, because the API may have applied the call: a 5xx (a gateway in front of an
API that did the work), a body that is not the documented JSON (a proxy's page, a half-deployed
API, a garbled 2xx), an answer that never came back after the request was sent. What each class
then means for a command is decided in ``worker/outcomes.py``.

Messages are built from the call label, the status and the API's own error strings only: never
from the request, the URL or the text of an HTTP-layer exception.
"""

from __future__ import annotations

import datetime
import email.utils
import json
from collections.abc import Mapping, Sequence
from http.client import IncompleteRead
from typing import Any, TypeGuard, cast

from urllib3.exceptions import (
    ConnectTimeoutError,
    DecodeError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
    SSLError,
)

from contracts.events import App, Customer, ErrorCode
from worker.api.calls import Payload
from worker.errors import AmbiguousError, PermanentError, ProvisioningError, TransientError

Result = None | list[Customer] | list[App] | dict[str, str]

# An answer's error strings as kept in events and dead-letter headers: the first ones, each
# cut short, and how many more there were.
MAX_API_ERRORS = 10
API_ERROR_MAX_CHARS = 300
REDACTED = "***"

# Lower-cased API error strings with a meaning of their own; anything else is a validation refusal.
AUTH_FAILED_ERRORS = frozenset({"bad username / password"})
CUSTOMER_NOT_FOUND_MESSAGE = "user not found"


def classify_response(
    label: str,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    payload: Payload,
    secrets: Sequence[str] = (),
) -> Result:
    """The typed result of a response, or raise the one error it means."""
    if status >= 500:
        raise AmbiguousError(f"{label}: server error (HTTP {status})")
    if status == 429:
        retry_after_s = parse_retry_after(headers.get("Retry-After"))
        raise TransientError(
            f"{label}: rate limited (HTTP 429)",
            retry_after_s=retry_after_s,
            api_errors=_api_errors(_decode(body), secrets),
        )
    document = _decode(body)
    if isinstance(document, dict) and _is_error(document):
        raise _error_from_body(label, status, document, secrets)
    if not 200 <= status < 300:
        raise _unexpected(label, status)
    result = _typed_payload(document, payload)
    if result is _UNEXPECTED:
        raise _unexpected(label, status)
    return cast(Result, result)


def classify_exception(label: str, exc: Exception) -> ProvisioningError:
    """The outcome of a request that got no complete response (urllib3's exceptions, raised
    unwrapped because the transport never retries); safe text, no chained cause."""
    if isinstance(exc, NewConnectionError | ProxyError):
        return TransientError(f"{label}: cannot connect (refused or unreachable)")
    if isinstance(exc, ConnectTimeoutError):
        return TransientError(f"{label}: connect timeout (nothing was sent)")
    if isinstance(exc, ReadTimeoutError):
        return AmbiguousError(f"{label}: no response before the read timeout (request was sent)")
    if isinstance(exc, DecodeError) or _response_broke(exc):
        return AmbiguousError(f"{label}: truncated response (request was sent)")
    if isinstance(exc, SSLError):
        return TransientError(f"{label}: TLS handshake failed (nothing was sent)")
    if isinstance(exc, ProtocolError | OSError):
        return AmbiguousError(f"{label}: connection closed or reset after the request was sent")
    return TransientError(f"{label}: request failed ({type(exc).__name__})")


def _response_broke(exc: Exception) -> bool:
    """The answer started and then stopped: urllib3 says "Connection broken" (or wraps an
    IncompleteRead) once it is reading the response, "Connection aborted" before."""
    if not isinstance(exc, ProtocolError):
        return False
    cause = exc.args[1] if len(exc.args) > 1 else None
    return isinstance(cause, IncompleteRead) or str(exc.args[0]).startswith("Connection broken")


def parse_retry_after(value: str | None, now: datetime.datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: delay-seconds or an HTTP-date; ``None`` if missing or garbage."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        return _seconds_until(text, now)
    if seconds != seconds or seconds < 0 or seconds == float("inf"):  # NaN, negative, inf
        return None
    return seconds


def _seconds_until(text: str, now: datetime.datetime | None) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=datetime.UTC)
    current = now or datetime.datetime.now(datetime.UTC)
    return max(0.0, (when - current).total_seconds())


def _decode(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return _UNEXPECTED


def _is_error(document: dict[str, Any]) -> bool:
    message = document.get("message")
    return isinstance(message, str) and message.strip().lower() != "success"


def _error_from_body(
    label: str, status: int, document: dict[str, Any], secrets: Sequence[str]
) -> ProvisioningError:
    message = str(document["message"]).strip()
    errors = _api_errors(document, secrets)
    if message.lower() == CUSTOMER_NOT_FOUND_MESSAGE:
        return PermanentError(
            ErrorCode.CUSTOMER_NOT_FOUND, f"{label}: customer not found", api_errors=(message,)
        )
    malformed = "errors" in document and not _is_str_list(document["errors"])
    if message.lower() != "error" or malformed:
        return _unexpected(label, status)
    code = _code_for(errors)
    text = "; ".join(errors) or "refused without a reason"
    return PermanentError(code, f"{label}: {text} (HTTP {status})", api_errors=errors)


def _code_for(errors: Sequence[str]) -> ErrorCode:
    """The most specific meaning among the API's error strings."""
    lowered = [error.strip().lower() for error in errors]
    if any(error in AUTH_FAILED_ERRORS for error in lowered):
        return ErrorCode.AUTH_FAILED
    if any(error == CUSTOMER_NOT_FOUND_MESSAGE for error in lowered):
        return ErrorCode.CUSTOMER_NOT_FOUND
    if any(error.endswith("already exists") for error in lowered):
        return ErrorCode.ALREADY_EXISTS
    if any(error.endswith("not found") for error in lowered):
        return ErrorCode.NOT_FOUND
    return ErrorCode.API_REJECTED


def _api_errors(document: Any, secrets: Sequence[str]) -> tuple[str, ...]:
    """The API's error strings, bounded: they go into events and dead-letter headers."""
    errors = document.get("errors") if isinstance(document, dict) else None
    if not _is_str_list(errors):
        return ()
    kept = [_scrub(error, secrets)[:API_ERROR_MAX_CHARS] for error in errors[:MAX_API_ERRORS]]
    if len(errors) > MAX_API_ERRORS:
        kept.append(f"and {len(errors) - MAX_API_ERRORS} more")
    return tuple(kept)


def _scrub(text: str, secrets: Sequence[str]) -> str:
    """The API's text never echoes a secret back into our logs, even if the API does."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def _is_str_list(value: Any) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _unexpected(label: str, status: int) -> AmbiguousError:
    return AmbiguousError(f"{label}: response is not the documented JSON (HTTP {status})")


class _Unexpected:
    """Marker for a body that does not have the documented shape."""


_UNEXPECTED: Any = _Unexpected()


def _typed_payload(document: Any, payload: Payload) -> Any:
    try:
        if payload is Payload.CUSTOMERS:
            return [_customer(row) for row in _rows(document)]
        if payload is Payload.APPS:
            return [_app(row) for row in _rows(document)]
        if payload is Payload.SETTINGS:
            return _settings(document)
    except (TypeError, ValueError, KeyError):
        return _UNEXPECTED
    ok = isinstance(document, dict) and str(document.get("message", "")).lower() == "success"
    return None if ok else _UNEXPECTED


def _rows(document: Any) -> list[dict[str, Any]]:
    if not isinstance(document, list) or not all(isinstance(row, dict) for row in document):
        raise TypeError("not a list of objects")
    return document


CUSTOMER_FIELDS = tuple(Customer.__struct_fields__)


def _customer(row: dict[str, Any]) -> Customer:
    values = {name: _text(row[name]) for name in CUSTOMER_FIELDS if row.get(name) is not None}
    if "active" in values:
        values["active"] = _flag(row["active"])  # type: ignore[assignment]
    return Customer(**values)  # type: ignore[arg-type]


def _app(row: dict[str, Any]) -> App:
    name = row["name"]
    if not isinstance(name, str) or not name:
        raise ValueError("app without a name")
    return App(
        name=name,
        title=_text(row.get("title") or ""),
        description=_text(row.get("description") or ""),
        activated=_flag(row.get("activated", False)),
    )


def _settings(document: Any) -> dict[str, str]:
    """``{"settings": {...}}`` as documented; a list of one-key objects is accepted too."""
    if not isinstance(document, dict):
        raise TypeError("settings is not an object")
    settings = document["settings"]
    if isinstance(settings, list):
        merged: dict[str, Any] = {}
        for item in settings:
            merged.update(item)
        settings = merged
    if not isinstance(settings, dict):
        raise TypeError("settings is not an object")
    return {str(key): _text(value) for key, value in settings.items()}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise TypeError("not a scalar")


def _flag(value: Any) -> bool:
    """The API spells booleans ``"true"``/``"false"``, ``1``/``0`` or as JSON booleans."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", ""):
        return False
    raise ValueError("not a boolean")
