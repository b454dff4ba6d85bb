"""The HTTP transport under the client: one urllib3 pool, form POSTs, no retries, no redirects.

requests cost more CPU per call than everything else a command does together (preparing the
request, merging session settings, finding the CA bundle on disk, building its Response):
profiling the worker put ~26 % of its interpreter time there. The client needs one thing,
a form POST with a (connect, read) timeout and the answer's status, headers and body, which
urllib3 does directly at a fraction of that cost.

The environment is read once, as requests would on every call: ``HTTPS_PROXY``/``HTTP_PROXY``
(honouring ``NO_PROXY``) and ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``; certifi's bundle
otherwise. Failures are urllib3's own exceptions, which ``classify_exception`` maps.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import certifi
import urllib3

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]  # case-insensitive (urllib3's HTTPHeaderDict)
    body: bytes


class HttpTransport:
    """POSTs to paths under one base URL. Thread-safe: urllib3's pool hands each thread its
    own connection."""

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
        self._timeout = urllib3.Timeout(connect=connect_timeout_s, read=timeout_s)
        self._headers = {**headers, "Content-Type": FORM_CONTENT_TYPE}
        # Not blocking when every connection is busy: a spare one is opened and discarded,
        # so a burst beyond the pool never waits on another call's response.
        proxy = proxy_for(base_url)
        self._manager: urllib3.PoolManager = (
            urllib3.ProxyManager(
                proxy, num_pools=2, maxsize=pool_size, block=False, ca_certs=ca_bundle()
            )
            if proxy
            else urllib3.PoolManager(
                num_pools=2, maxsize=pool_size, block=False, ca_certs=ca_bundle()
            )
        )
        # Without a proxy every call goes to the base URL's host: its pool directly, with the
        # request target as a path, skips the manager's URL parsing and pool lookup per call.
        self._pool: urllib3.HTTPConnectionPool | None = None
        self._base_path = urlsplit(self._base).path
        if proxy is None:
            self._pool = self._manager.connection_from_url(self._base)

    def post_form(self, path: str, form: Sequence[tuple[str, str]]) -> HttpResponse:
        """One POST to ``base_url/path``; raises urllib3's exception when no complete
        response came back."""
        opener: urllib3.HTTPConnectionPool | urllib3.PoolManager
        if self._pool is not None:
            opener, target = self._pool, f"{self._base_path}/{path}"
        else:
            opener, target = self._manager, f"{self._base}/{path}"
        response = opener.urlopen(
            "POST",
            target,
            body=urlencode(form).encode("ascii"),
            headers=self._headers,
            timeout=self._timeout,
            retries=False,  # the worker owns retries, and must see every failure
            redirect=False,
            preload_content=True,
        )
        return HttpResponse(response.status, response.headers, response.data)

    def close(self) -> None:
        self._manager.clear()


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
