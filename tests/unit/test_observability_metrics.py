"""Metric values after a known sequence of calls, read back from the exposition text."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from contracts import COMMAND_TYPES
from worker.observability.metrics import Metrics, known_command_types

FIXED_NOW = 1_700_000_000.0


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = metrics.render().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, frozenset(labels.items())))


def test_command_outcomes_durations_and_last_processed() -> None:
    # Given isolated metrics with a fixed clock
    m = Metrics(clock=lambda: FIXED_NOW, version="1.2.3")
    # When commands finish with known outcomes
    m.command_finished("CreateCustomer", "succeeded", 0.2)
    m.command_finished("CreateCustomer", "succeeded", 0.003)
    m.command_finished("CreateCustomer", "failed", 1.5)
    m.command_finished("ListApps", "rejected", 0.0005)
    # Then counters, histogram and timestamp say exactly that
    p = "provisioner_"
    assert value(m, p + "commands_total", command_type="CreateCustomer", outcome="succeeded") == 2
    assert value(m, p + "commands_total", command_type="CreateCustomer", outcome="failed") == 1
    assert value(m, p + "commands_total", command_type="ListApps", outcome="rejected") == 1
    assert value(m, p + "command_duration_seconds_count", command_type="CreateCustomer") == 3
    assert value(m, p + "command_duration_seconds_sum", command_type="CreateCustomer") == (
        0.2 + 0.003 + 1.5
    )
    le_5ms = value(
        m, p + "command_duration_seconds_bucket", command_type="CreateCustomer", le="0.005"
    )
    assert le_5ms == 1
    assert value(m, p + "command_duration_seconds_bucket", command_type="ListApps", le="0.001") == 1
    assert value(m, p + "last_processed_timestamp_seconds") == FIXED_NOW
    assert value(m, p + "build_info", version="1.2.3") == 1


def test_retries_replays_dead_letters_and_broker_state() -> None:
    # Given isolated metrics
    m = Metrics()
    # When the worker reports a sequence of happenings
    m.immediate_retry("ResetPassword")
    m.immediate_retry("ResetPassword")
    m.delayed_retry("ResetPassword")
    m.idempotent_replay("DeleteCustomer")
    m.dead_lettered("retries_exhausted")
    m.dead_lettered("rejected")
    m.dead_lettered("rejected")
    m.in_flight(+1)
    m.in_flight(+1)
    m.in_flight(-1)
    m.broker_connected_changed(True)
    m.broker_reconnected()
    m.broker_reconnected()
    m.event_unroutable()
    m.api_request("reseller.add", "2xx", 0.05)
    m.api_request("reseller.add", "5xx", 0.5)
    m.api_request("reseller.add", "5xx", 0.7)
    # Then every metric has the expected value
    p = "provisioner_"
    assert value(m, p + "immediate_retries_total", command_type="ResetPassword") == 2
    assert value(m, p + "delayed_retries_total", command_type="ResetPassword") == 1
    assert value(m, p + "idempotent_replays_total", command_type="DeleteCustomer") == 1
    assert value(m, p + "dead_lettered_total", reason="retries_exhausted") == 1
    assert value(m, p + "dead_lettered_total", reason="rejected") == 2
    assert value(m, p + "in_flight_commands") == 1
    assert value(m, p + "broker_connected") == 1
    assert value(m, p + "broker_reconnects_total") == 2
    assert value(m, p + "events_unroutable_total") == 1
    count = p + "api_request_duration_seconds_count"
    assert value(m, count, call="reseller.add", status_class="5xx") == 2
    assert value(m, count, call="reseller.add", status_class="2xx") == 1
    # And disconnecting drops the gauge back to 0
    m.broker_connected_changed(False)
    assert value(m, p + "broker_connected") == 0


def test_label_values_stay_bounded_whatever_the_caller_passes() -> None:
    # Given isolated metrics
    m = Metrics()
    # When callers pass attacker-controlled or unexpected label values
    m.command_finished("DropTables'; --", "succeeded", 0.1)
    m.command_finished(None, "weird outcome", 0.1)
    m.immediate_retry("x" * 500)
    m.api_request("https://api/?api_key=K3y", "418 teapot", 0.1)
    m.dead_lettered("Reason With Spaces and a password=hunter22")
    # Then they land in the bounded buckets
    p = "provisioner_"
    assert value(m, p + "commands_total", command_type="unknown", outcome="succeeded") == 1
    assert value(m, p + "commands_total", command_type="unknown", outcome="other") == 1
    assert value(m, p + "immediate_retries_total", command_type="unknown") == 1
    count = p + "api_request_duration_seconds_count"
    assert value(m, count, call="other", status_class="other") == 1
    assert value(m, p + "dead_lettered_total", reason="other") == 1
    # And no secret-looking text reached the exposition
    text = m.render().decode()
    assert "K3y" not in text
    assert "hunter22" not in text


def test_every_api_call_label_of_the_client_is_kept() -> None:
    # Given the call labels the API client reports through on_request
    from worker.api.calls import CALLS

    labels = {spec.label for spec in CALLS.values()}
    m = Metrics()
    # When each is observed
    for label in labels:
        m.api_request(label, "2xx", 0.01)
    # Then each has its own series, none folded into "other"
    count = "provisioner_api_request_duration_seconds_count"
    for label in labels:
        assert value(m, count, call=label, status_class="2xx") == 1, label


def test_known_command_types_are_the_nineteen_of_the_contract() -> None:
    # Then the label set has exactly the 19 command types of DESIGN.md
    assert len(known_command_types()) == 19
    assert known_command_types() == frozenset(COMMAND_TYPES)


def test_instances_do_not_share_state() -> None:
    # Given two instances
    a, b = Metrics(), Metrics()
    # When only one counts
    a.broker_reconnected()
    # Then the other is untouched
    assert value(a, "provisioner_broker_reconnects_total") == 1
    assert value(b, "provisioner_broker_reconnects_total") == 0


def test_api_requests_in_flight_are_read_at_scrape_time_against_the_slots() -> None:
    # Given metrics watching a client's slots, 16 of them
    m = Metrics()
    in_flight = [3]
    m.watch_api_slots(lambda: in_flight[0], 16)
    # When the number in flight changes between two scrapes
    first = value(m, "provisioner_api_requests_in_flight")
    in_flight[0] = 16
    second = value(m, "provisioner_api_requests_in_flight")
    # Then each scrape shows the value of its moment, beside the slots
    assert (first, second) == (3, 16)
    assert value(m, "provisioner_api_slots") == 16
