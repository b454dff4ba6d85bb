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
