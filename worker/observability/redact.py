"""Secret scrubbing shared by the logs, Sentry and the dead-letter tools.

- ``register_secret(value)``: the worker registers the API key, the AMQP password and the store
  password at start; every later ``redact_text`` replaces them (and their URL-encoded forms).
- ``redact_text(text) -> str``: also removes URL userinfo passwords
  (``amqp://user:pass@host`` -> ``amqp://user:***@host``), ``password=...``/``api_key=...``
  form or query pairs and ``'password': '...'`` pairs as printed by ``repr(dict)`` or JSON.
- ``redact_mapping(obj)``: a copy of ``obj`` (mappings, lists and tuples, recursively) where the
  value of every secret-named key is ``"***"`` and every other string went through
  ``redact_text``.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"

# Shorter registered values would mask ordinary words in every line; URL and key=value patterns
# still catch such secrets where they have a recognisable place.
MIN_REGISTERED_SECRET_CHARS = 3

SECRET_KEYS = frozenset(
    {
        "password",
        "new_password",
        "confirm_password",
        "confirmpassword",
        "credential_password",
        "new_credential_password",
        "passwd",
        "pass",
        "api_key",
        "apikey",
        "api_user",
        "authorization",
        "proxy_authorization",
        "amqp_url",
        "amqp_password",
        "store_url",
        "sentry_dsn",
        "secret",
        "token",
        "access_token",
        "refresh_token",
        "cookie",
        "set_cookie",
        "x_api_key",
    }
)
# Key fragments that mark a secret wherever they occur in a key name (``smtp_password``).
SECRET_KEY_FRAGMENTS = ("password", "passwd", "api_key", "apikey", "secret", "token")

_KEY_NAME = (
    r"[A-Za-z0-9_.\-\[\]]*(?:password|passwd|api_key|apikey|api_user|secret|token)[A-Za-z0-9_\-\]]*"
)
_URL_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*):(?P<pw>[^@/\s]*)@")
_FORM_PAIR = re.compile(rf"(?P<head>(?i:{_KEY_NAME})=)(?P<value>[^&\s'\",;]+)")
_QUOTED_PAIR = re.compile(
    rf"(?P<head>(?P<q>[\"'])(?i:{_KEY_NAME})(?P=q)\s*:\s*)(?P<value>\"[^\"]*\"|'[^']*')"
)
_AUTH_HEADER = re.compile(
    r"(?P<head>(?i:authorization)[\"']?\s*[:=]\s*[\"']?)(?P<value>[^\"'\r\n,}]+)"
)

_lock = threading.Lock()
_registered: tuple[str, ...] = ()


def register_secret(value: str) -> None:
    """Mask ``value`` (and its URL-encoded forms) in every later ``redact_text``."""
    global _registered
    if len(value) < MIN_REGISTERED_SECRET_CHARS:
        return
    forms = {value, quote(value, safe=""), quote_plus(value)}
    with _lock:
        # Longest first so a secret containing another one is masked whole.
        _registered = tuple(sorted(set(_registered) | forms, key=len, reverse=True))


def clear_registered_secrets() -> None:
    """Forget every registered secret (tests use it to stay independent)."""
    global _registered
    with _lock:
        _registered = ()


@functools.lru_cache(maxsize=4096)  # the same few field names, on every log line
def is_secret_key(key: str) -> bool:
    normal = key.strip().lower().replace("-", "_")
    return normal in SECRET_KEYS or any(f in normal for f in SECRET_KEY_FRAGMENTS)


def _mask_quoted(match: re.Match[str]) -> str:
    quote_char = match.group("value")[0]
    return f"{match.group('head')}{quote_char}{MASK}{quote_char}"


# Substrings without which a pattern cannot match: every log line passes through here, and
# most lines hold none of them, so the regexes run only where they could find something.
_KEY_TRIGGERS = ("pass", "api_key", "apikey", "api_user", "secret", "token")
_KEY_TRIGGER = re.compile("|".join(_KEY_TRIGGERS))


def redact_text(text: str) -> str:
    """``text`` with every known kind of secret replaced by ``***``."""
    for secret in _registered:
        if secret in text:
            text = text.replace(secret, MASK)
    if "://" in text and "@" in text:
        text = _URL_USERINFO.sub(rf"\g<head>:{MASK}@", text)
    lowered = text.lower()
    if _KEY_TRIGGER.search(lowered):
        text = _QUOTED_PAIR.sub(_mask_quoted, text)
        text = _FORM_PAIR.sub(rf"\g<head>{MASK}", text)
    if "authorization" in lowered:
        text = _AUTH_HEADER.sub(rf"\g<head>{MASK}", text)
    return text


def redact_mapping(obj: Any) -> Any:
    """A copy of ``obj`` with secret-named keys masked and every string redacted."""
    # The common leaves first: a Mapping check is an ABC lookup, on every value of every line.
    if isinstance(obj, str):
        return redact_text(obj)
    if obj is None or isinstance(obj, int | float):
        return obj
    if isinstance(obj, Mapping):
        return {
            key: MASK if isinstance(key, str) and is_secret_key(key) else redact_mapping(value)
            for key, value in obj.items()
        }
    if isinstance(obj, list):
        return [redact_mapping(item) for item in obj]
    if isinstance(obj, tuple):
        return tuple(redact_mapping(item) for item in obj)
    return obj
