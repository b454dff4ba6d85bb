"""The HTTP transport under the client: urllib3 form POSTs, no retries, no redirects.

One urllib3 pool for the API's origin (``HTTPConnectionPool``/``HTTPSConnectionPool``), or a
``ProxyManager`` when the environment names a proxy: keep-alive connections, at most
``pool_size`` of them (the API slots; a caller beyond them waits for one, up to the connect
timeout), every request with an explicit (connect, read) timeout, the body read whole before
the call returns. urllib3 brings TLS verification, proxies (CONNECT tunnels for https),
chunked and gzip answers, and the check that an idle connection was not closed by the server.

requests is not used: its per-call preparation (merging session settings, finding the CA
bundle on disk, building its Response) was ~26 % of the worker's interpreter time. The
environment is read once instead, as requests would on every call: ``HTTPS_PROXY``/
``HTTP_PROXY`` (honouring ``NO_PROXY``) and ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``;
certifi's bundle otherwise. Failures are urllib3's exception classes, which
``classify_exception`` maps.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote_plus, urlsplit

import certifi
import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.retry import Retry

__all__ = ["HttpTransport", "ca_bundle", "encode_form", "proxy_for"]

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
SWITCHING_PROTOCOLS = 101
# retries=False as one shared object: urllib3 would build it anew on every call. The worker
# owns retries, and must see every failure; a redirect is returned as it came.
NO_RETRIES = Retry(total=False, redirect=False)
# What quote_plus leaves as it is (urllib.parse's _ALWAYS_SAFE): most names and values.
_UNQUOTED = re.compile(r"[A-Za-z0-9_.~-]*")


class HttpTransport:
    """POSTs to paths under one base URL. Thread-safe: each request has a connection to
    itself, and at most ``pool_size`` connections exist at once."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout_s: float,
        timeout_s: float,
        pool_size: int,
        headers: Mapping[str, str],
    ) -> None:
        self._base = base_url.rstrip("/")
        self._pool_timeout_s = connect_timeout_s
        self._timeout = timeout = urllib3.Timeout(connect=connect_timeout_s, read=timeout_s)
        # block: never more connections than slots, a burst waits for one.
        options: dict[str, Any] = {
            "headers": {**headers, "Content-Type": FORM_CONTENT_TYPE},
            "timeout": timeout,
            "maxsize": pool_size,
            "block": True,
            "retries": NO_RETRIES,
        }
        proxy = proxy_for(base_url)
        self._opener: urllib3.PoolManager | HTTPConnectionPool
        if proxy is None:
            self._opener, self._prefix = _origin_pool(self._base, options)
        else:
            self._opener = urllib3.ProxyManager(proxy, num_pools=1, ca_certs=ca_bundle(), **options)
            self._opener.pool_classes_by_scheme = POOLS
            self._prefix = self._base

    def post_form(self, path: str, form: Sequence[tuple[str, str]]) -> urllib3.BaseHTTPResponse:
        """One POST to ``base_url/path``, its answer read whole; raises urllib3's exception
        classes when no complete answer came back."""
        return self._opener.urlopen(
            "POST",
            f"{self._prefix}/{path}",
            body=encode_form(form),
            timeout=self._timeout,
            retries=NO_RETRIES,
            redirect=False,
            preload_content=True,
            assert_same_host=False,  # the target is a path on this pool's own origin
            pool_timeout=self._pool_timeout_s,  # type: ignore[arg-type]  # seconds, a float
        )

    def close(self) -> None:
        """Close the idle connections; those in use close when their answer is read."""
        if isinstance(self._opener, urllib3.PoolManager):
            # clear() only forgets the pools: their connections would stay open until the
            # pools are collected, so each is closed here first.
            pools = self._opener.pools
            for key in pools.keys():  # noqa: SIM118  (iterating the container itself raises)
                with contextlib.suppress(KeyError):  # dropped meanwhile: nothing to close
                    pools[key].close()
            self._opener.clear()
        else:
            self._opener.close()


class _FinalAnswer(http.client.HTTPResponse):
    """http.client passes over an interim ``100 Continue`` but takes any other 1xx answer
    (``102 Processing``, ``103 Early Hints``) for the final one: the call would see a 1xx
    without a body, and the real answer would be left unread. This reads past every interim
    answer to the final one (a ``101`` switches protocols: it is final)."""

    def _read_status(self) -> tuple[str, int, str]:
        version, status, reason = super()._read_status()  # type: ignore[misc]
        while 100 < status < 200 and status != SWITCHING_PROTOCOLS:
            http.client.parse_headers(self.fp)  # the interim answer's headers, not needed
            version, status, reason = super()._read_status()  # type: ignore[misc]
        return version, status, reason


class _Connection(HTTPConnection):
    response_class = _FinalAnswer


class _TlsConnection(HTTPSConnection):
    response_class = _FinalAnswer


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _TlsPool(HTTPSConnectionPool):
    ConnectionCls = _TlsConnection


POOLS: dict[str, type[HTTPConnectionPool]] = {"http": _Pool, "https": _TlsPool}


def _origin_pool(base: str, options: dict[str, Any]) -> tuple[HTTPConnectionPool, str]:
    """The pool of the base URL's origin, and the path every request target starts with:
    every call goes there, so its pool directly skips a manager's URL parsing and pool lookup
    per call."""
    origin = urllib3.util.parse_url(base)
    tls: dict[str, Any] = {"ca_certs": ca_bundle()} if origin.scheme == "https" else {}
    pool = POOLS[origin.scheme or "http"]
    return pool(origin.host or "", origin.port, **options, **tls), origin.path or ""


def encode_form(form: Sequence[tuple[str, str]]) -> bytes:
    """``urlencode(form).encode("ascii")``, byte for byte, without calling ``quote_plus`` for
    the names and values it would leave unchanged: a command's form has some forty, and the
    three calls deep per item were a sixth of a request's CPU in the worker."""
    unquoted = _UNQUOTED.fullmatch
    return "&".join(
        f"{name if unquoted(name) else quote_plus(name)}="
        f"{value if unquoted(value) else quote_plus(value)}"
        for name, value in form
    ).encode("ascii")


def ca_bundle() -> str:
    """The CA bundle named by the environment, as requests would pick it, else certifi's."""
    for name in CA_BUNDLE_VARIABLES:
        if os.environ.get(name):
            return os.environ[name]
    return str(certifi.where())


def proxy_for(url: str) -> str | None:
    """The proxy the environment names for ``url``'s scheme, unless ``NO_PROXY`` bypasses it."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    if not proxy or bypass(parts.netloc, proxies):
        return None
    return proxy
