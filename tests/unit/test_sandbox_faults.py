"""The fault decisions and the validation helpers of the sandbox, without HTTP."""

from __future__ import annotations

import datetime as dt

import pytest

from sandbox.faults import Faults, FaultSettings, FaultSettingsError
from sandbox.validation import one_month_after, parse_billing_date

DRAWS = 200


def test_one_shot_rules_are_consumed_in_order_and_narrowed_by_task() -> None:
    # Given a rule for two manage/enable calls and one for any add
    faults = Faults()
    faults.merge({"next": [{"call": "manage", "task": "enable", "fault": "hang", "count": 2}]})
    faults.merge({"next": [{"call": "add", "fault": "reset"}]})
    # When calls are decided
    decided = [
        faults.decide("manage", "get"),
        faults.decide("manage", "enable"),
        faults.decide("add", None),
        faults.decide("manage", "enable"),
        faults.decide("manage", "enable"),
        faults.decide("add", None),
    ]
    # Then each rule hits exactly its count of matching calls
    kinds = [f.kind if f else None for f in decided]
    assert kinds == [None, "hang", "reset", "hang", None, None]
    assert faults.snapshot()["next"] == []
    injected = faults.snapshot()["injected"]
    assert injected == {**dict.fromkeys(injected, 0), "hang": 2, "reset": 1}


def test_same_seed_same_decisions() -> None:
    # Given two fault sets with the same seed and rates
    settings = {
        "error_rate": 0.25,
        "rate_429": 0.25,
        "hang_rate": 0.1,
        "reset_rate": 0.1,
        "seed": 42,
    }
    first, second = Faults(), Faults()
    first.merge(settings)
    second.merge(settings)
    # When many calls are decided
    a = [f and f.kind for f in (first.decide("add", None) for _ in range(DRAWS))]
    b = [f and f.kind for f in (second.decide("add", None) for _ in range(DRAWS))]
    # Then the decisions are identical and every kind occurs
    assert a == b
    assert {"5xx", "429", "hang", "reset", None} == set(a)


def test_a_rule_with_a_rate_stays_and_hits_only_its_call() -> None:
    # Given a seeded rule answering half the credential adds 502 after applying them
    faults = Faults()
    rule = {"call": "credential", "task": "add", "fault": "applied_5xx", "rate": 0.5}
    faults.merge({"seed": 7, "error_status": 502, "next": [rule]})
    # When many adds and other calls are decided
    adds = [faults.decide("credential", "add") for _ in range(DRAWS)]
    others = [faults.decide("credential", "delete") for _ in range(DRAWS)]
    # Then some adds (not all) get the 502, the others none, and the rule stays
    hit = [f for f in adds if f is not None]
    assert 0 < len(hit) < DRAWS
    assert {(f.kind, f.status) for f in hit} == {("applied_5xx", 502)}
    assert others == [None] * DRAWS
    assert len(faults.snapshot()["next"]) == 1


def test_applied_fault_rates_are_drawn_too() -> None:
    # Given only the applied-then-answered rates
    faults = Faults()
    faults.merge({"seed": 3, "applied_error_rate": 0.3, "applied_garbled_rate": 0.3})
    # When many calls are decided / Then both kinds occur
    kinds = {f and f.kind for f in (faults.decide("add", None) for _ in range(DRAWS))}
    assert kinds == {"applied_5xx", "applied_garbled", None}


def test_start_settings_are_validated_and_kept() -> None:
    # Given start-up settings
    faults = Faults(FaultSettings(latency_ms=5, error_rate=0.5, error_status=500, seed=1))
    # When they are read
    snapshot = faults.snapshot()
    # Then they are in force
    assert (snapshot["latency_ms"], snapshot["error_rate"], snapshot["error_status"]) == (
        5.0,
        0.5,
        500,
    )
    assert faults.latency_s == pytest.approx(0.005)
    with pytest.raises(FaultSettingsError, match="error_rate"):
        Faults(FaultSettings(error_rate=1.5))


@pytest.mark.parametrize(
    "change",
    [
        {"rate_429": -0.1},
        {"latency_ms": "slow"},
        {"error_status": 404},
        {"next": {"call": "add"}},
        {"next": [{"call": "nope", "fault": "5xx"}]},
        {"next": [{"call": "add", "fault": "5xx", "count": 0}]},
        {"next": [{"call": "add", "fault": "5xx", "status": 404}]},
        {"next": [{"call": "add", "fault": "5xx", "when": "now"}]},
        {"unknown": 1},
    ],
)
def test_invalid_changes_are_refused_and_change_nothing(change: dict[str, object]) -> None:
    # Given default faults
    faults = Faults()
    before = faults.snapshot()
    # When an invalid change is merged
    with pytest.raises(FaultSettingsError):
        faults.merge(change)
    # Then nothing changed
    assert faults.snapshot() == before


def test_clear_returns_to_no_faults() -> None:
    # Given some faults
    faults = Faults()
    faults.merge({"error_rate": 1.0, "next": [{"call": "add", "fault": "5xx"}]})
    # When cleared
    faults.clear()
    # Then no call is faulted
    assert faults.decide("add", None) is None
    assert faults.snapshot()["error_rate"] == 0.0


def test_billing_date_must_be_within_one_cycle() -> None:
    # Given today and the edges of one billing cycle
    today = dt.datetime.now(dt.UTC).date()
    problems: list[str] = []
    # When dates inside and outside the cycle are parsed
    parse_billing_date(today.isoformat(), problems)
    parse_billing_date(one_month_after(today).isoformat(), problems)
    assert problems == []
    parse_billing_date((one_month_after(today) + dt.timedelta(days=5)).isoformat(), problems)
    parse_billing_date((today - dt.timedelta(days=5)).isoformat(), problems)
    # Then only the outside ones are problems
    assert len(problems) == 2


def test_one_month_after_clamps_to_the_month_end() -> None:
    # Given the documents' example and a year end
    # When a month is added
    # Then 2/28 -> 3/28, 1/31 -> 2/29 in a leap year, 12/15 -> 1/15
    assert one_month_after(dt.date(2011, 2, 28)) == dt.date(2011, 3, 28)
    assert one_month_after(dt.date(2024, 1, 31)) == dt.date(2024, 2, 29)
    assert one_month_after(dt.date(2024, 12, 15)) == dt.date(2025, 1, 15)
