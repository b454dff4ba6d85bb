"""JSON and text log lines, the command outcome line, and secret scrubbing on the way out."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from worker.observability.logs import configure_logging, log_command_outcome, log_fields
from worker.observability.redact import clear_registered_secrets, register_secret

API_KEY = "SG.live-KEY-0123456789"
AMQP_PASSWORD = "amqp-Pa55word"
CUSTOMER_PASSWORD = "hunter2-customer"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    clear_registered_secrets()
    yield
    clear_registered_secrets()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_line_has_base_keys_and_fields() -> None:
    # Given JSON logging into a buffer
    out = io.StringIO()
    configure_logging("json", "INFO", stream=out)
    # When a life-cycle line with fields is logged
    logging.getLogger("worker.app").info("worker started", extra=log_fields(worker_id="w-1"))
    # Then it is one JSON object with the base keys and the field
    (line,) = json_lines(out)
    assert line["message"] == "worker started"
    assert line["level"] == "INFO"
    assert line["logger"] == "worker.app"
    assert line["worker_id"] == "w-1"
    assert datetime.fromisoformat(line["ts"]).utcoffset() is not None
    assert line["ts"].endswith("Z")


def test_level_filters_lines() -> None:
    out = io.StringIO()
    configure_logging("json", "WARNING", stream=out)
    logging.getLogger("x").info("hidden")
    logging.getLogger("x").warning("shown")
    assert [line["message"] for line in json_lines(out)] == ["shown"]


def test_command_outcome_line_carries_every_field() -> None:
    # Given JSON logging
    out = io.StringIO()
    configure_logging("json", stream=out)
    # When a failed command is reported
    log_command_outcome(
        logging.getLogger("worker.outcome"),
        command_type="AddCredential",
        idempotency_key="k-1",
        correlation_id="c-1",
        customer="bob",
        attempt=2,
        outcome="failed",
        error_code="already_exists",
        duration_s=0.1234567,
    )
    # Then one WARNING line holds every field of the outcome
    (line,) = json_lines(out)
    assert line["level"] == "WARNING"
    assert line["message"] == "command failed"
    expected = {
        "event": "command_outcome",
        "command_type": "AddCredential",
        "idempotency_key": "k-1",
        "correlation_id": "c-1",
        "customer": "bob",
        "attempt": 2,
        "outcome": "failed",
        "error_code": "already_exists",
        "duration_s": 0.123457,
    }
    assert {k: line[k] for k in expected} == expected


def test_success_outcome_is_info() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)
    log_command_outcome(
        logging.getLogger("worker.outcome"),
        command_type="ListApps",
        idempotency_key=None,
        correlation_id=None,
        customer=None,
        attempt=1,
        outcome="succeeded (replayed)",
        error_code=None,
        duration_s=0.001,
    )
    (line,) = json_lines(out)
    assert line["level"] == "INFO"
    assert line["customer"] is None


def test_exception_is_structured_and_scrubbed() -> None:
    # Given JSON logging and a registered API key
    register_secret(API_KEY)
    out = io.StringIO()
    configure_logging("json", stream=out)
    # When an exception whose text holds secrets is logged
    try:
        raise ConnectionError(
            f"amqp://svc:{AMQP_PASSWORD}@rabbit/ failed; body password={CUSTOMER_PASSWORD}"
            f"&api_key={API_KEY}"
        )
    except ConnectionError:
        logging.getLogger("worker.broker").exception("connect failed")
    # Then type, message and traceback are there, the secrets are not
    raw = out.getvalue()
    (line,) = json_lines(out)
    assert line["exc_type"] == "ConnectionError"
    assert "amqp://svc:***@rabbit/" in line["exc_message"]
    assert "Traceback" in line["traceback"]
    for secret in (AMQP_PASSWORD, CUSTOMER_PASSWORD, API_KEY):
        assert secret not in raw


def test_message_args_and_fields_are_scrubbed() -> None:
    # Given JSON logging with the AMQP password registered
    register_secret(AMQP_PASSWORD)
    out = io.StringIO()
    configure_logging("json", stream=out)
    # When secrets arrive through %-args and structured fields
    logging.getLogger("w").info(
        "url %s", f"amqp://u:{AMQP_PASSWORD}@h", extra=log_fields(
            password=CUSTOMER_PASSWORD, note=f"pw is {AMQP_PASSWORD}", body={"api_key": API_KEY}
        )
    )  # fmt: skip
    # Then none reaches the line, and the masked fields are still present
    raw = out.getvalue()
    for secret in (AMQP_PASSWORD, CUSTOMER_PASSWORD, API_KEY):
        assert secret not in raw
    (line,) = json_lines(out)
    assert line["password"] == "***"
    assert line["body"] == {"api_key": "***"}
    assert line["message"] == "url amqp://u:***@h"


def test_text_format_is_human_and_scrubbed() -> None:
    # Given text logging with the API key registered
    register_secret(API_KEY)
    out = io.StringIO()
    configure_logging("text", "DEBUG", stream=out)
    # When a line with fields and an exception is logged
    try:
        raise ValueError(f"bad key {API_KEY}")
    except ValueError:
        logging.getLogger("worker.api").exception("call failed", extra=log_fields(call="add"))
    # Then it reads as text with the fields, and the key is masked in the traceback too
    text = out.getvalue()
    assert "ERROR" in text
    assert "worker.api: call failed [call=add]" in text
    assert "ValueError: bad key ***" in text
    assert API_KEY not in text


def test_reconfiguring_replaces_the_handler() -> None:
    # Given logging configured twice
    first, second = io.StringIO(), io.StringIO()
    configure_logging("json", stream=first)
    configure_logging("json", stream=second)
    # When a line is logged
    logging.getLogger("x").warning("once")
    # Then only the latest handler writes it, once
    assert first.getvalue() == ""
    assert len(json_lines(second)) == 1


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="json, text"):
        configure_logging("xml")
