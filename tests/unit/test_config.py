"""Settings derived from the environment: the pool, the prefetch, and refusals."""

from __future__ import annotations

import pytest

from worker.config import ConfigError, drain_bound_s, load_settings, worst_case_execution_s


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


def test_by_default_each_api_slot_has_threads_claiming_recording_and_confirming_beside_it() -> None:
    settings = load_settings({"PROVISIONER_CONCURRENCY": "16"})
    assert settings.pool_threads == 16 * 8


@pytest.mark.parametrize("variable", ["PROVISIONER_CONCURRENCY", "PROVISIONER_THREADS_PER_SLOT"])
def test_zero_threads_or_slots_is_refused_naming_the_variable(variable: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings({variable: "0"})
    assert refused.value.variable == variable
    assert "positive" in str(refused.value)


def test_the_store_pool_is_a_setting_capped_by_the_threads_that_can_use_it() -> None:
    # Given a pool of six connections, and a process with only two pool threads
    many = load_settings({"PROVISIONER_STORE_POOL_SIZE": "6"})
    few = load_settings(
        {
            "PROVISIONER_STORE_POOL_SIZE": "6",
            "PROVISIONER_CONCURRENCY": "1",
            "PROVISIONER_THREADS_PER_SLOT": "2",
        }
    )
    # When the connections per process are derived
    # Then the pool is six, independent of the concurrency, but never above threads + purger,
    # and the heartbeat has one more of its own
    assert (many.store_pool_connections, few.store_pool_connections) == (6, 3)
    assert (many.store_connections, few.store_connections) == (7, 4)
    assert load_settings({}).store_pool_size <= 8


@pytest.mark.parametrize("size", ["0", "65", "many"])
def test_a_bad_store_pool_size_is_refused_naming_the_variable(size: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings({"PROVISIONER_STORE_POOL_SIZE": size})
    assert refused.value.variable == "PROVISIONER_STORE_POOL_SIZE"


def test_a_store_wait_as_long_as_the_lease_is_refused() -> None:
    # Given a wait for a store connection that would outlive a command's lease
    environ = {"PROVISIONER_STORE_POOL_WAIT": "20m", "PROVISIONER_LEASE_TTL": "20m"}
    # When the settings are read / Then start-up is refused naming the wait
    with pytest.raises(ConfigError) as refused:
        load_settings(environ)
    assert refused.value.variable == "PROVISIONER_STORE_POOL_WAIT"


@pytest.mark.parametrize("raw", ["1023", "16777216", "-1", "lots"])
def test_a_body_limit_outside_its_bounds_is_refused_naming_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"PROVISIONER_MAX_BODY_BYTES": raw})
    assert caught.value.variable == "PROVISIONER_MAX_BODY_BYTES"


def test_the_body_limit_defaults_to_the_contracts_limit_and_can_be_set() -> None:
    assert load_settings({}).max_body_bytes == 1024 * 1024
    assert load_settings({"PROVISIONER_MAX_BODY_BYTES": "4096"}).max_body_bytes == 4096


def test_a_lease_shorter_than_one_execution_is_refused_naming_the_settings() -> None:
    # Given a 60 s lease, and 30 s API timeouts with the default budgets
    environ = {"PROVISIONER_LEASE_TTL": "60", "PROVISIONER_API_TIMEOUT": "30"}
    # When the settings are read / Then the lease is refused, with what makes the worst case
    with pytest.raises(ConfigError) as refused:
        load_settings(environ)
    assert refused.value.variable == "PROVISIONER_LEASE_TTL"
    for name in ("PROVISIONER_API_TIMEOUT", "PROVISIONER_RESOLVE_BUDGET"):
        assert name in str(refused.value)


def test_the_default_lease_outlasts_one_execution_and_bounds_the_drain() -> None:
    settings = load_settings({})
    worst = worst_case_execution_s(settings)
    assert settings.lease_ttl_s > worst
    assert drain_bound_s(settings) == max(settings.drain_timeout_s, worst)


def test_each_thread_of_a_slot_adds_a_request_to_the_worst_case() -> None:
    # Given the same timeouts with 2 and with 4 threads per API slot
    two = load_settings({"PROVISIONER_THREADS_PER_SLOT": "2"})
    four = load_settings({"PROVISIONER_THREADS_PER_SLOT": "4"})
    # When one execution's worst case is derived
    # Then each of the 2 attempts (a read-back and the call) of the 2 budgets waits behind
    # 2 more requests of 35 s (5 s connect, 30 s read)
    assert worst_case_execution_s(four) - worst_case_execution_s(two) == 2 * 2 * 2 * 35.0


def test_a_delivery_that_could_stay_unacked_past_the_consumer_timeout_is_refused() -> None:
    # Given a 10-minute wait for a predecessor, and 12 threads per slot with the default
    # timeouts (worst case 65 + 4 * 12 * 35 = 1745 s; the lease raised above it)
    environ = {
        "PROVISIONER_PREDECESSOR_WAIT": "10m",
        "PROVISIONER_THREADS_PER_SLOT": "12",
        "PROVISIONER_LEASE_TTL": "1h",
    }
    # When the settings are read / Then start-up is refused: the delivery, unacked through
    # the wait and the execution, would outlive RabbitMQ's 30-minute consumer_timeout
    with pytest.raises(ConfigError) as refused:
        load_settings(environ)
    assert refused.value.variable == "PROVISIONER_PREDECESSOR_WAIT"
    assert "consumer_timeout" in str(refused.value)
    assert "PROVISIONER_THREADS_PER_SLOT" in str(refused.value)
    # And the same wait with the default threads per slot starts (600 + 1185 s < 1800 s)
    del environ["PROVISIONER_THREADS_PER_SLOT"]
    assert load_settings(environ).predecessor_wait_s == 600.0


def test_a_heartbeat_not_well_inside_the_death_cutoff_is_refused() -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings({"PROVISIONER_WORKER_HEARTBEAT": "10", "PROVISIONER_WORKER_DEAD_AFTER": "15"})
    assert refused.value.variable == "PROVISIONER_WORKER_DEAD_AFTER"


@pytest.mark.parametrize("raw", ["11m", "0", "-1s", "soon"])
def test_a_predecessor_wait_outside_its_bounds_is_refused_naming_the_variable(raw: str) -> None:
    # Given a wait for a predecessor of zero, unreadable, or near the broker's consumer_timeout
    with pytest.raises(ConfigError) as refused:
        load_settings({"PROVISIONER_PREDECESSOR_WAIT": raw})
    # Then start-up is refused naming it
    assert refused.value.variable == "PROVISIONER_PREDECESSOR_WAIT"


def test_the_predecessor_wait_defaults_to_half_a_minute_and_can_be_set() -> None:
    assert load_settings({}).predecessor_wait_s == 30.0
    assert load_settings({"PROVISIONER_PREDECESSOR_WAIT": "10m"}).predecessor_wait_s == 600.0
