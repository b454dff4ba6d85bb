"""The HTTP transport under the client: form POSTs, no retries, no redirects.

requests cost more CPU per call than everything else a command does together (preparing the
request, merging session settings, finding the CA bundle on disk, building its Response):
profiling the worker put ~26 % of its interpreter time there. The client needs one thing,
a form POST with a (connect, read) timeout and the answer's status, headers and body. Straight
to the API, ``worker.api.connection.DirectPool`` does it with the fewest system calls (see
there why that matters); through a proxy, urllib3's ``ProxyManager`` (CONNECT tunnels).

The environment is read once, as requests would on every call: ``HTTPS_PROXY``/``HTTP_PROXY``
(honouring ``NO_PROXY``) and ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``; certifi's bundle
otherwise. Failures are urllib3's exception classes either way, which ``classify_exception``
maps.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Mapping, Sequence
from urllib.parse import urlencode, urlsplit

import certifi
import urllib3

from worker.api.connection import DirectPool, HttpResponse

__all__ = ["HttpResponse", "HttpTransport", "ca_bundle", "proxy_for"]

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


class HttpTransport:
    """POSTs to paths under one base URL. Thread-safe: each request has a connection to
    itself; at most ``pool_size`` idle ones are kept, and a burst beyond them opens spares
    rather than waiting for another call's answer."""

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
        self._base_path = urlsplit(self._base).path
        self._headers = {**headers, "Content-Type": FORM_CONTENT_TYPE}
        self._direct: DirectPool | None = None
        self._proxied: urllib3.ProxyManager | None = None
        self._timeout = urllib3.Timeout(connect=connect_timeout_s, read=timeout_s)
        proxy = proxy_for(base_url)
        if proxy is None:
            self._direct = DirectPool(
                self._base,
                connect_timeout_s=connect_timeout_s,
                timeout_s=timeout_s,
                maxsize=pool_size,
                headers=self._headers,
                ca_certs=ca_bundle(),
            )
        else:
            self._proxied = urllib3.ProxyManager(
                proxy, num_pools=2, maxsize=pool_size, block=False, ca_certs=ca_bundle()
            )

    def post_form(self, path: str, form: Sequence[tuple[str, str]]) -> HttpResponse:
        """One POST to ``base_url/path``; raises urllib3's exception classes when no complete
        response came back."""
        body = urlencode(form).encode("ascii")
        if self._direct is not None:
            return self._direct.post(f"{self._base_path}/{path}", body)
        assert self._proxied is not None
        response = self._proxied.urlopen(
            "POST",
            f"{self._base}/{path}",
            body=body,
            headers=self._headers,
            timeout=self._timeout,
            retries=False,  # the worker owns retries, and must see every failure
            redirect=False,
            preload_content=True,
        )
        return HttpResponse(response.status, response.headers, response.data)

    def close(self) -> None:
        if self._direct is not None:
            self._direct.close()
        if self._proxied is not None:
            self._proxied.clear()


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
