"""Reading headers defensively: a wrong type or size reads as absent and is named."""

from __future__ import annotations

import datetime
import decimal
from types import SimpleNamespace
from typing import Any

import pika.data
import pytest

from worker.broker import headers as h

WRONG = ["abc", b"abc", "9" * 40, -3, 10**15, 1.5, True, decimal.Decimal("2"), [1], {"a": 1}, ""]
WRONG += [datetime.datetime(2026, 1, 1), None.__class__]


def props(**headers: Any) -> SimpleNamespace:
    return SimpleNamespace(headers=headers)


@pytest.mark.parametrize("value", WRONG, ids=repr)
@pytest.mark.parametrize("name", [h.ATTEMPTS, h.DELIVERY_COUNT, h.REPLAYS])
def test_a_counter_of_a_wrong_type_reads_as_zero_and_is_named(name: str, value: Any) -> None:
    read = h.read_delivery_headers(props(**{name: value}), redelivered=True)
    assert (read.attempts, read.delivery_count) == (0, 0)
    assert read.ignored == (name,)


def test_counters_as_the_worker_and_the_broker_write_them_are_read() -> None:
    read = h.read_delivery_headers(props(**{h.ATTEMPTS: 2, h.DELIVERY_COUNT: 3}), True)
    assert (read.attempts, read.delivery_count, read.ignored) == (2, 3, ())
    assert h.attempts_of(props(**{h.ATTEMPTS: b"4"})) == 4  # as older versions wrote it


def test_the_delivery_count_as_pika_reads_the_brokers_header_is_read() -> None:
    # Given x-delivery-count as RabbitMQ sends it (a signed 64-bit 'l' field): pika's long
    header = b"\x10x-delivery-count" + b"l" + (4).to_bytes(8, "big")
    decoded, _ = pika.data.decode_table(len(header).to_bytes(4, "big") + header, 0)
    # When the headers are read / Then the count is 4, not ignored as a wrong type
    read = h.read_delivery_headers(props(**decoded), redelivered=True)
    assert (read.delivery_count, read.ignored) == (4, ())


def test_a_first_deliverys_count_is_the_publishers_word_and_is_not_read() -> None:
    read = h.read_delivery_headers(props(**{h.DELIVERY_COUNT: 19}), redelivered=False)
    assert read.delivery_count == 0


@pytest.mark.parametrize("value", ["k" * 256, "é" * 128, 7, b"\xff" * 300, ""])
def test_an_unusable_routing_key_header_falls_back_to_the_deliverys_own(value: Any) -> None:
    properties = props(**{h.ORIGINAL_ROUTING_KEY: value})
    assert h.original_routing_key(properties, "EnableCustomer") == "EnableCustomer"


def test_a_routing_key_header_of_255_bytes_is_kept() -> None:
    assert h.original_routing_key(props(**{h.ORIGINAL_ROUTING_KEY: "k" * 255}), "x") == "k" * 255


def test_headers_that_are_not_a_table_are_named_not_raised() -> None:
    read = h.read_delivery_headers(SimpleNamespace(headers="nonsense"), redelivered=True)
    assert read.ignored == ("headers",)
    assert h.attempts_of(SimpleNamespace(headers=[1])) == 0


def test_a_first_failure_time_too_long_or_not_text_is_not_carried() -> None:
    assert h.first_failure_of(props(**{h.FIRST_FAILURE: "x" * 65})) is None
    assert h.first_failure_of(props(**{h.FIRST_FAILURE: {"a": 1}})) is None
    stamp = "2026-01-01T00:00:00.000+00:00"
    assert h.first_failure_of(props(**{h.FIRST_FAILURE: stamp})) == stamp


@pytest.mark.parametrize("value", ["", "k" * 256, 7, [1], {"a": 1}, None, True])
def test_a_predecessor_header_that_is_no_idempotency_key_reads_as_none(value: Any) -> None:
    assert h.predecessor_of(props(**{h.AFTER: value})) is None
    assert h.predecessor_of(SimpleNamespace(headers="nonsense")) is None


def test_a_predecessor_header_is_read_as_text() -> None:
    assert h.predecessor_of(props(**{h.AFTER: b"create-ada"})) == "create-ada"
    assert h.predecessor_of(props(**{h.AFTER: "k" * 255})) == "k" * 255
