"""Secret scrubbing shared by logs, Sentry and the dead-letter tools."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from worker.observability.redact import (
    clear_registered_secrets,
    redact_mapping,
    redact_text,
    register_secret,
)


@pytest.fixture(autouse=True)
def _no_registered_secrets() -> Iterator[None]:
    clear_registered_secrets()
    yield
    clear_registered_secrets()


def test_url_userinfo_password_is_masked_and_user_kept() -> None:
    # Given a line carrying an AMQP URL with a password
    line = "connecting to amqp://svc:s3cr3t-pw@rabbit:5672/%2F now"
    # When it is redacted
    out = redact_text(line)
    # Then the password is gone and the rest stays readable
    assert "s3cr3t-pw" not in out
    assert "amqp://svc:***@rabbit:5672/%2F" in out


def test_short_userinfo_password_is_masked() -> None:
    assert redact_text("amqp://u:p@h") == "amqp://u:***@h"


@pytest.mark.parametrize(
    "line",
    [
        "POST api_user=me&api_key=K3yValue&user=bob",
        "GET /x?password=hunter22&x=1",
        "new_password=hunter22 failed",
        "credential_password=hunter22",
        "NEW_CREDENTIAL_PASSWORD=hunter22",
    ],
)
def test_form_and_query_secret_pairs_are_masked(line: str) -> None:
    # When a form or query string with secret-named keys is redacted
    out = redact_text(line)
    # Then neither value survives
    assert "hunter22" not in out
    assert "K3yValue" not in out
    assert "=***" in out


def test_quoted_pairs_as_in_dict_repr_and_json_are_masked() -> None:
    # Given the repr of a dict and a JSON body with secret-named keys
    text = "{'password': 'hunter22', 'user': 'bob'} and {\"api_key\": \"K3yValue\"}"
    # When redacted
    out = redact_text(text)
    # Then the values are masked, other fields untouched
    assert "hunter22" not in out
    assert "K3yValue" not in out
    assert "'user': 'bob'" in out


def test_registered_secret_is_masked_anywhere_including_url_encoded() -> None:
    # Given a registered API key containing characters that URL encoding changes
    register_secret("SG.abc/def+ghi")
    # When it appears raw and encoded in free text
    out = redact_text("key SG.abc/def+ghi then SG.abc%2Fdef%2Bghi")
    # Then both forms are masked
    assert "abc" not in out
    assert out == "key *** then ***"


def test_too_short_registered_secret_is_ignored_to_keep_lines_readable() -> None:
    # Given a one-character "secret"
    register_secret("e")
    # Then ordinary words are not shredded
    assert redact_text("message") == "message"


def test_redact_mapping_masks_secret_named_keys_recursively() -> None:
    # Given a nested command-like body
    register_secret("AMQPpw123")
    body = {
        "type": "AddCredential",
        "customer": "bob",
        "credential_password": "cr3d-pw",
        "nested": [{"Password": "hunter22"}, ("amqp://u:AMQPpw123@h",)],
        "settings": {"New-Credential-Password": "x1y2z3", "api_key": "K3y", "count": 3},
    }
    # When redacted
    out = redact_mapping(body)
    # Then secret-named values are masked, strings are scrubbed, other values kept
    assert out["credential_password"] == "***"
    assert out["nested"][0]["Password"] == "***"
    assert out["nested"][1] == ("amqp://u:***@h",)
    assert out["settings"] == {"New-Credential-Password": "***", "api_key": "***", "count": 3}
    assert out["customer"] == "bob"
    # And the input is not modified
    assert body["credential_password"] == "cr3d-pw"


@pytest.mark.parametrize(
    "line",
    [
        "Authorization: Basic dXNlcjpodW50ZXIyMg==",
        "{'Authorization': 'Bearer dXNlcjpodW50ZXIyMg=='}",
    ],
)
def test_authorization_header_values_are_masked(line: str) -> None:
    # When a header line or header dict repr is redacted
    out = redact_text(line)
    # Then the credential is gone but the header name stays for the reader
    assert "dXNlcjpodW50ZXIyMg" not in out
    assert "Authorization" in out


def test_redaction_is_idempotent_and_leaves_plain_text_alone() -> None:
    # Given a line that was already redacted, and one with nothing secret
    once = redact_text("amqp://u:pw12@h password=hunter22")
    plain = "user bob on http://rabbit:15672/api@v1 took 12ms"
    # Then redacting again changes nothing, and plain text is untouched
    assert redact_text(once) == once
    assert redact_text(plain) == plain
