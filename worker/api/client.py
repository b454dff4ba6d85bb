"""The reseller API client: one connection pool, one form POST per call, one outcome per POST.

Retries are not done here (the worker owns them, and classification must see every failure):
the transport never retries, and every request carries an explicit (connect, read) timeout.
The API user and key travel only in the POST body, never in the URL; secrets are revealed
only while the body is built, and nothing logged or raised carries them.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

import urllib3

from contracts.events import Customer, ErrorCode
from worker.api.calls import (
    CALLS,
    LIST_FILTERS,
    CallSpec,
    Revealable,
    build_params,
    command_values,
    encode_value,
    secret_values,
)
from worker.api.classify import Result, classify_exception, classify_response
from worker.api.slots import Slots
from worker.api.transport import HttpTransport
from worker.errors import PermanentError, ProvisioningError
from worker.observability import traced

if TYPE_CHECKING:
    from worker.config import Settings

log = logging.getLogger(__name__)

NAMINGS = {"apiv2": "reseller", "distributor": "distributor"}
TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 5.0
POOL_SIZE = 16
USER_AGENT = "provisioner/0.1 (+reseller-api-client)"

Password = str | Revealable
RequestObserver = Callable[[str, str, float], None]


class ResellerClient:
    """A thread-safe client for every documented reseller call: ``execute(command)`` runs any
    command type; ``list_customers`` serves the read-back of ambiguous outcomes."""

    def __init__(
        self,
        base_url: str,
        api_user: str,
        api_key: Password,
        *,
        naming: str = "apiv2",
        timeout_s: float = TIMEOUT_S,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        pool_size: int = POOL_SIZE,
        max_in_flight: int | None = None,
        on_request: RequestObserver | None = None,
    ) -> None:
        if naming not in NAMINGS:
            raise ValueError(f"naming must be one of {', '.join(NAMINGS)}")
        self._base = base_url.rstrip("/")
        self._prefix = NAMINGS[naming]
        self._api_user = api_user
        self._api_key = api_key
        self._on_request = on_request
        # The worker's concurrency is the API's: at most this many requests at once, however
        # many threads are claiming, recording or publishing around their calls.
        self._slots: contextlib.AbstractContextManager[Any] = (
            Slots(max_in_flight) if max_in_flight else contextlib.nullcontext()
        )
        self._transport = HttpTransport(
            self._base,
            connect_timeout_s=connect_timeout_s,
            timeout_s=timeout_s,
            pool_size=pool_size,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, on_request: RequestObserver | None = None
    ) -> ResellerClient:
        return cls(
            settings.api_url,
            settings.api_user,
            settings.api_key,
            naming=settings.api_naming,
            timeout_s=settings.api_timeout_s,
            connect_timeout_s=settings.api_connect_timeout_s,
            pool_size=settings.concurrency,
            max_in_flight=settings.concurrency,
            on_request=on_request,
        )

    def __repr__(self) -> str:  # the key never reaches a log line through repr
        return f"ResellerClient(base_url={self._base!r}, naming={self._prefix!r})"

    def close(self) -> None:
        self._transport.close()

    def requests_in_flight(self) -> int:
        """Requests holding a slot now (0 when ``max_in_flight`` is unbounded)."""
        return self._slots.in_use() if isinstance(self._slots, Slots) else 0

    def __enter__(self) -> ResellerClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def url_for(self, call: str) -> str:
        """The URL of ``call`` (no credentials: they travel in the body), as its span shows it."""
        return f"{self._base}/{self._prefix}.{call}.json"

    # -- the calls ------------------------------------------------------------------------

    def execute(self, command: object) -> Result:
        """Run any command through its row in the call table: the client's one entry point."""
        spec = CALLS.get(type(command).__name__)
        if spec is None:
            raise TypeError(f"no reseller call for {type(command).__name__}")
        return self._call(spec, command_values(spec, command))

    def list_customers(
        self, *, limit: int | None = None, offset: int | None = None, **filters: Any
    ) -> list[Customer]:
        """The customers matching ``filters`` (``LIST_FILTERS``): what a read-back needs,
        without a command and its idempotency key around it."""
        unknown = sorted(set(filters) - set(LIST_FILTERS))
        if unknown:
            raise TypeError(f"unknown customer filters: {', '.join(unknown)}")
        values = {**filters, "limit": limit, "offset": offset}
        return cast(list[Customer], self._call(CALLS["ListCustomers"], values))

    # -- the request ----------------------------------------------------------------------

    @traced.api_call
    def _call(self, spec: CallSpec, values: Mapping[str, object]) -> Result:
        label = spec.label
        params = self._params(label, spec, values)
        form = [("api_user", self._api_user), ("api_key", encode_value(self._api_key)), *params]
        response, error = self._post(label, f"{self._prefix}.{spec.call}.json", form)
        if error is not None:
            raise error from None
        assert response is not None  # _post returns exactly one of the two
        secrets = (*secret_values(spec, values), encode_value(self._api_key))
        return classify_response(
            label, response.status, response.headers, response.data, spec.payload, secrets
        )

    @staticmethod
    def _params(label: str, spec: CallSpec, values: Mapping[str, object]) -> list[tuple[str, str]]:
        try:
            return build_params(spec, values)
        except ValueError as exc:  # only setting names (never values) are in its text
            refusal = f"{label}: {exc}"
        # Raised outside the except block, so that no context chains onto the error.
        raise PermanentError(ErrorCode.API_REJECTED, refusal)

    @traced.api_response
    def _post(
        self, label: str, path: str, form: list[tuple[str, str]]
    ) -> tuple[urllib3.BaseHTTPResponse | None, ProvisioningError | None]:
        """One POST. A failure comes back as its outcome for the caller to raise outside the
        ``except`` block, so that the raised error chains nothing that saw the request."""
        error: ProvisioningError | None = None
        with self._slots:  # waiting for a slot is not the API's time: started after it
            started = time.monotonic()
            try:
                response = self._transport.post_form(path, form)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                error = classify_exception(label, exc)
                status_class = _failure_class(exc)
        if error is not None:
            self._observe(label, status_class, started)
            return None, error
        code = response.status
        self._observe(label, _status_class(code), started, status=str(code))
        return response, None

    def _observe(self, label: str, status_class: str, started: float, status: str = "") -> None:
        duration_s = time.monotonic() - started
        log.debug("reseller API %s -> %s in %.3fs", label, status or status_class, duration_s)
        if self._on_request is not None:
            try:
                self._on_request(label, status_class, duration_s)
            except Exception:  # a metrics bug must not change a call's outcome
                log.warning("on_request observer failed for %s", label, exc_info=True)


def _failure_class(exc: Exception) -> str:
    # urllib3 files a refused connection under its connect timeouts; it is not one.
    refused = isinstance(exc, urllib3.exceptions.NewConnectionError)
    timed_out = isinstance(exc, urllib3.exceptions.TimeoutError)
    return "timeout" if timed_out and not refused else "error"


def _status_class(status: int) -> str:
    if 200 <= status < 300:
        return "2xx"
    if 400 <= status < 500:
        return "4xx"
    if status >= 500:
        return "5xx"
    return "error"
