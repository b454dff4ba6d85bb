"""Settings derived from the environment: the pool, the prefetch, and refusals."""

from __future__ import annotations

import pytest

from worker.config import ConfigError, load_settings


def test_the_pool_has_threads_per_api_slot_and_the_prefetch_follows_the_pool() -> None:
    # Given 8 API requests at once, 3 threads per slot and 2 prefetched messages per thread
    environ = {
        "PROVISIONER_CONCURRENCY": "8",
        "PROVISIONER_THREADS_PER_SLOT": "3",
        "PROVISIONER_PREFETCH_PER_WORKER": "2",
    }
    # When the settings are read
    settings = load_settings(environ)
    # Then the pool runs 24 commands at once and 48 messages are prefetched
    assert (settings.concurrency, settings.pool_threads, settings.prefetch) == (8, 24, 48)


def test_by_default_a_command_beside_each_api_call_can_claim_or_record() -> None:
    settings = load_settings({"PROVISIONER_CONCURRENCY": "16"})
    assert settings.pool_threads == 32


@pytest.mark.parametrize("variable", ["PROVISIONER_CONCURRENCY", "PROVISIONER_THREADS_PER_SLOT"])
def test_zero_threads_or_slots_is_refused_naming_the_variable(variable: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings({variable: "0"})
    assert refused.value.variable == variable
    assert "positive" in str(refused.value)


@pytest.mark.parametrize("raw", ["1023", "16777216", "-1", "lots"])
def test_a_body_limit_outside_its_bounds_is_refused_naming_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"PROVISIONER_MAX_BODY_BYTES": raw})
    assert caught.value.variable == "PROVISIONER_MAX_BODY_BYTES"


def test_the_body_limit_defaults_to_the_contracts_limit_and_can_be_set() -> None:
    assert load_settings({}).max_body_bytes == 1024 * 1024
    assert load_settings({"PROVISIONER_MAX_BODY_BYTES": "4096"}).max_body_bytes == 4096
