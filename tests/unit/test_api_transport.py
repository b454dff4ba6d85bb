"""The transport reads the environment once, the way requests would on every call."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import certifi
import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.api.transport import ca_bundle, encode_form, proxy_for


def test_no_proxy_variables_means_a_direct_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an environment without proxy variables
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    # When the proxy for the API is looked up; Then there is none
    assert proxy_for("https://api.sendgrid.com/apiv2") is None


def test_the_proxy_of_the_urls_scheme_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given one proxy per scheme
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:3128")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:3129")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    # Then each URL goes through its scheme's proxy
    assert proxy_for("https://api.sendgrid.com/apiv2") == "http://127.0.0.1:3128"
    assert proxy_for("http://127.0.0.1:8080/apiv2") == "http://127.0.0.1:3129"


def test_no_proxy_bypasses_the_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a proxy and a NO_PROXY naming the API's host
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:3128")
    monkeypatch.setenv("no_proxy", "localhost,api.sendgrid.com")
    # Then the API is reached directly, another host still through the proxy
    assert proxy_for("https://api.sendgrid.com/apiv2") is None
    assert proxy_for("https://example.com/apiv2") == "http://127.0.0.1:3128"


def test_the_ca_bundle_comes_from_the_environment_else_certifi(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given no CA variable, the bundle is certifi's
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    assert ca_bundle() == certifi.where()
    # When CURL_CA_BUNDLE names a file, that file; and REQUESTS_CA_BUNDLE wins over it
    bundle = tmp_path / "ca.pem"
    monkeypatch.setenv("CURL_CA_BUNDLE", str(bundle))
    assert ca_bundle() == str(bundle)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "other.pem"))
    assert ca_bundle() == str(tmp_path / "other.pem")


@given(st.lists(st.tuples(st.text(), st.text()), max_size=8))
def test_the_form_is_encoded_as_urlencode_would(form: list[tuple[str, str]]) -> None:
    # Given any form, unicode, spaces, reserved and control characters included
    # When it is encoded for the body; Then the bytes are urlencode's, byte for byte
    assert encode_form(form) == urlencode(form).encode("ascii")


def test_safe_and_unsafe_items_are_encoded_alike() -> None:
    # Given names and values that need no quoting next to ones that do
    form = [("api_user", "reseller-1"), ("email", "a+b@example.com"), ("name", "Zoë O'Brien")]
    # Then only the latter are quoted
    expected = b"api_user=reseller-1&email=a%2Bb%40example.com&name=Zo%C3%AB+O%27Brien"
    assert encode_form(form) == expected
