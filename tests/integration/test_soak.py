"""The reduced soak: `make soak`'s six checks on 2,000 commands with one SIGKILL.

The full run (20,000 commands, three kills, a broker restart) is ``python -m bench.soak``;
this one keeps the same faults and checks at a size that fits the suite. It leaves the
broker alone: a restart here would disturb every other user of the local broker, and
``test_worker_lifecycle.py`` already restarts it mid-stream.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bench.soak import SoakConfig, SoakResult, run_soak

pytestmark = pytest.mark.integration

REDUCED = SoakConfig(commands=2_000, customers=200, kills=1, broker_restarts=0, seed=7)
EXPECTED_CHECKS = 6


def assert_every_check_passed(result: SoakResult) -> str:
    """All six checks ran and passed; the rendered report, for further messages."""
    report = result.render()
    assert len(result.checks) == EXPECTED_CHECKS, report
    for check in result.checks:
        assert check.passed, f"{check.line()}\n{report}"
    return report


def test_reduced_soak_keeps_every_delivery_guarantee(tmp_path: Path) -> None:
    # Given 2,000 mixed commands over 200 customers, a sandbox injecting 2% 5xx, 1% 429,
    # 0.5% apply-then-hang, 0.5% apply-then-502 and 0.5% apply-then-garbled-200 with
    # GetAppSettings down throughout, and a worker that is killed with SIGKILL once midway
    config = REDUCED

    # When the soak runs to the end and replays the dead-letter queue without faults
    result = run_soak(config, tmp_path, say=print)

    # Then every check passes: one terminal event per key, every effect at most once,
    # nothing stuck, every failure dead-lettered with its reason, every key succeeded
    report = assert_every_check_passed(result)
    # And the disruption really happened and the faults really fired
    assert result.counts["worker SIGKILLs"] == 1, report
    assert result.counts["commands"] == config.commands, report
    injected = result.counts["faults injected"]
    assert injected["5xx"] > 0 and injected["429"] > 0 and injected["hang"] > 0, report
    assert injected["applied_5xx"] > 0 and injected["applied_garbled"] > 0, report
    # And the outage filled the dead-letter queue, and the replay took every message
    assert result.counts["dead-lettered"] > 0, report
    assert result.counts["replayed"] == result.counts["dead-lettered"], report


def test_reduced_soak_with_two_worker_processes(tmp_path: Path) -> None:
    # Given the same faults, and the worker run as a supervisor of two processes sharing the
    # SQLite store, all killed at once midway (as a crashed pod)
    config = dataclasses.replace(REDUCED, processes=2, concurrency=8, seed=11)
    # When the soak runs to the end
    result = run_soak(config, tmp_path, say=print)
    # Then the same six checks pass, each customer's commands in publish order among them
    report = assert_every_check_passed(result)
    assert result.counts["worker SIGKILLs"] == 1, report
