"""Spans inside a command's CONSUMER span: its reseller API calls (CLIENT), its read-back and
its idempotency-store operations (INTERNAL). Applied as decorators and a store wrapper, so the
traced code keeps one line per hook; with tracing off each costs one attribute lookup.

No span carries a secret: the API URL is the client's base (no userinfo, no query: the API
user and key travel in the POST body), and store spans name the operation and the store kind.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from worker.errors import AmbiguousError, PermanentError, TransientError
from worker.observability import tracing

F = TypeVar("F", bound=Callable[..., Any])
T_Store = TypeVar("T_Store")

# The classes of outcome of one API call (docs/architecture.md's table of outcomes).
OUTCOME_CLASSES = (
    (PermanentError, "permanent"),
    (TransientError, "transient"),
    (AmbiguousError, "ambiguous"),
)
TRACED_STORE_OPERATIONS = frozenset({"claim", "complete", "get", "release", "unlock_customer"})


def url_without_credentials(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return f"{parts.scheme}://{netloc}{parts.path}"


def outcome_class(exc: BaseException | None) -> str:
    if exc is None:
        return "success"
    return next((name for cls, name in OUTCOME_CLASSES if isinstance(exc, cls)), "error")


def api_call(method: F) -> F:
    """On ``ResellerClient._call(self, spec, values)``: one CLIENT span per API call."""

    @functools.wraps(method)
    def traced(client: Any, spec: Any, values: Any) -> Any:
        tracer = tracing.tracer()
        if tracer is None:
            return method(client, spec, values)
        url = url_without_credentials(client.url_for(spec.call))
        parts = urlsplit(url)
        attributes = {
            "http.request.method": "POST",
            "url.full": url,
            "url.scheme": parts.scheme,
            "server.address": parts.hostname or "",
            "server.port": parts.port or (443 if parts.scheme == "https" else 80),
            "provisioner.api.call": spec.label,
        }
        with tracer.start_as_current_span(
            f"POST {parts.path}",
            kind=SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                result = method(client, spec, values)
            except Exception as exc:
                span.set_attribute("provisioner.api.outcome", outcome_class(exc))
                tracing.record_failure(span, exc)
                raise
            span.set_attribute("provisioner.api.outcome", "success")
            return result

    return traced  # type: ignore[return-value]


def api_response(method: F) -> F:
    """On ``ResellerClient._post``: the answer's status (or why none came) on the CLIENT span."""

    @functools.wraps(method)
    def traced(*args: Any, **kwargs: Any) -> Any:
        returned = method(*args, **kwargs)
        if tracing.tracer() is None:
            return returned
        response, error = returned
        span = trace.get_current_span()
        if response is not None:
            span.set_attribute("http.response.status_code", int(response.status))
            if response.status >= 400:
                span.set_attribute("error.type", str(response.status))
        elif error is not None:
            span.set_attribute("error.type", type(error).__name__)
        return returned

    return traced  # type: ignore[return-value]


def internal(name: str) -> Callable[[F], F]:
    """An INTERNAL span ``name`` around the decorated function, when tracing is on."""

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def traced(*args: Any, **kwargs: Any) -> Any:
            tracer = tracing.tracer()
            if tracer is None:
                return function(*args, **kwargs)
            with tracer.start_as_current_span(name, record_exception=False) as span:
                try:
                    return function(*args, **kwargs)
                except Exception as exc:
                    tracing.record_failure(span, exc)
                    raise

        return traced  # type: ignore[return-value]

    return decorate


class TracedStore:
    """The idempotency store with a span per command-time operation (``store claim``, ...)."""

    def __init__(self, store: Any, system: str) -> None:
        self._store, self._system = store, system

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if name not in TRACED_STORE_OPERATIONS or not callable(attribute):
            return attribute
        return functools.partial(self._traced, name, attribute)

    def _traced(self, name: str, operation: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        tracer = tracing.tracer()
        if tracer is None:
            return operation(*args, **kw)
        attributes = {"db.system.name": self._system, "db.operation.name": name}
        with tracer.start_as_current_span(
            f"store {name}", attributes=attributes, record_exception=False
        ) as span:
            try:
                return operation(*args, **kw)
            except Exception as exc:
                tracing.record_failure(span, exc)
                raise


def traced_store(store: T_Store, url: str) -> T_Store:
    """``store`` with spans when tracing is on (decided once, at start), else ``store`` itself."""
    if not tracing.enabled():
        return store
    scheme = urlsplit(url).scheme.split("+")[0]
    system = "postgresql" if scheme.startswith("postgres") else scheme or "sqlite"
    return TracedStore(store, system)  # type: ignore[return-value]
