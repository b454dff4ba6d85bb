"""`provisioner order holds|release` on a real SQLite store: what an operator sees (never a
body or a password) and what a release leaves in the store."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import cast

import pytest

from worker.cli import main
from worker.store import open_store
from worker.store.order import Backend
from worker.store.order_upkeep import OrderUpkeep

PASSWORD = "s3cret-pass"


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A store holding ``alice`` behind ``alice-add`` for an hour, two commands parked."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = open_store(url, clock=lambda: time.time() - 3600)
    upkeep = OrderUpkeep(cast(Backend, store), clock=lambda: time.time() - 3600)
    upkeep.set_hold("alice", 3, "alice-add")
    for n in (1, 2):
        body = json.dumps({"customer": "alice", "credential_password": PASSWORD}).encode()
        upkeep.park("alice", 3, "AddCredential", b"", body + bytes([n]))
    store.close()
    return url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["order", *argv])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_holds_lists_each_hold_with_its_age_and_parked_count_and_no_body(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # When an operator lists the holds (tiers of 30 s and 2 min, a 10-minute margin)
    code, out = run(
        capsys, "holds", "--json", "--store-url", url, "--retry-delays", "30s,2m",
        "--hold-overdue-margin", "10m",
    )  # fmt: skip
    # Then the held customer shows, overdue, with its holder and parked count, and no secret
    assert code == 0
    listing = json.loads(out[: out.rindex("}") + 1])
    assert listing["overdue_after_s"] == 720
    [hold] = listing["holds"]
    assert hold["order_key"] == "alice" and hold["holder"] == "alice-add"
    assert (hold["partition"], hold["parked"], hold["state"]) == (3, 2, "overdue")
    assert 3500 < hold["age_s"] < 3700
    assert PASSWORD not in out
    # And the table says the same
    code, out = run(capsys, "holds", "--store-url", url)
    assert code == 0 and "alice-add" in out and PASSWORD not in out


def test_release_turns_the_hold_draining_and_remembers_the_holder(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # When an operator releases the held customer
    code, out = run(capsys, "release", "alice", "--store-url", url)
    # Then the hold drains (its parked commands run), and the holder is remembered
    assert code == 0 and "released alice from alice-add" in out
    store = open_store(url)
    try:
        upkeep = OrderUpkeep(cast(Backend, store))
        assert upkeep.hold("alice") == (None, 3)
        assert upkeep.take_released("alice-add") == "alice"
    finally:
        store.close()
    # And releasing it again, or a customer not held, says so with exit code 4
    assert run(capsys, "release", "alice", "--store-url", url)[0] == 4
    assert run(capsys, "release", "bob", "--store-url", url)[0] == 4


def test_partitions_shows_the_recorded_p_and_a_change_under_way(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a deployment whose P is recorded as 4, switching to 6
    store = open_store(url)
    upkeep = OrderUpkeep(cast(Backend, store))
    upkeep.tick("worker-a", [], [], 20.0, 20.0, configured=4)
    upkeep.set_switch("drain:6")
    store.close()
    # When an operator asks / Then both show
    code, out = run(capsys, "partitions", "--store-url", url)
    assert code == 0
    assert "partitions: 4" in out and "drain:6" in out
    assert "member worker-a: PROVISIONER_PARTITIONS=4" in out
