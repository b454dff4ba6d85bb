"""A call slower than the lease: the holder's liveness thread renews its leases, so a second
worker waiting for the key never takes it over. Two executors (two workers' owners) on one
real store, against the real sandbox."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts import decode_command
from sandbox.server import SandboxServer
from tests.fixtures.wait import wait_until
from tests.integration.harness import customer_command
from worker.api import ResellerClient
from worker.decision import Decision, Envelope, ExecutorConfig
from worker.execute import Executor
from worker.leases import Liveness
from worker.store import IdempotencyStore, open_store

LEASE_TTL_S = 1.0  # far shorter than the call
HANG_S = 3.0  # the API applies the add, then answers this late
HEARTBEAT_S = 0.1
DEAD_AFTER_S = 5.0  # the waiting worker gives up after this (and a margin): longer than HANG_S
USER = "lease@example.com"
ADD = {
    "type": "AddCredential",
    "idempotency_key": "k-lease",
    "customer": USER,
    "credential_name": "smtp-lease",
    "credential_password": "cred-secret",
}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IdempotencyStore]:
    url = (
        f"sqlite:///{tmp_path / 'store.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    opened = open_store(url)
    yield opened
    opened.close()


@pytest.fixture
def client(sandbox: SandboxServer) -> Iterator[ResellerClient]:
    api = ResellerClient(sandbox.url, sandbox.api_user, sandbox.api_key, timeout_s=10.0)
    yield api
    api.close()


def worker(client: ResellerClient, store: IdempotencyStore, owner: str) -> tuple[Executor, Any]:
    config = ExecutorConfig(
        owner=owner,
        retry_delays_s=(1.0,),
        immediate_retries=1,
        immediate_retry_budget_s=1.0,
        lease_ttl_s=LEASE_TTL_S,
        dead_after_s=DEAD_AFTER_S,
        fingerprint_key=store.fingerprint_keys().key,
    )
    executor = Executor(client, store, config)
    liveness = Liveness(
        store, owner, executor.leases, heartbeat_s=HEARTBEAT_S, lease_ttl_s=LEASE_TTL_S
    )
    liveness.beat()
    liveness.start()
    return executor, liveness


def envelope(body: dict[str, Any], redelivered: bool = False) -> Envelope:
    env = Envelope(decode_command(json.dumps(body).encode()), None, "corr", 0)
    return dataclasses.replace(env, delivery_count=1) if redelivered else env


def test_a_call_slower_than_the_lease_is_not_taken_over_by_a_waiting_worker(
    sandbox: SandboxServer, client: ResellerClient, store: IdempotencyStore
) -> None:
    # Given two workers on one store, a customer, and an API that applies the next
    # credential add and answers it only after three lease times
    first, first_liveness = worker(client, store, "first")
    second, second_liveness = worker(client, store, "second")
    try:
        created = first.process(envelope(customer_command(USER, key="k-user", email=USER)))
        assert created.outcome == "succeeded"
        rule = {"call": "credential", "task": "add", "fault": "hang", "count": 1}
        sandbox.control_post("faults", {"hang_s": HANG_S, "next": [rule]})
        # When the first runs the add, and the second gets a redelivered copy meanwhile
        decisions: dict[str, Decision] = {}
        running = threading.Thread(target=lambda: decisions.update(a=first.process(envelope(ADD))))
        running.start()
        wait_until(lambda: sandbox.state.calls.get("credential/add"), 10, "the add under way")
        decisions["b"] = second.process(envelope(ADD, redelivered=True))
        running.join(timeout=30)
        # Then the second waited and published the first's event: one effect, one event id
        assert decisions["a"].outcome == "succeeded" and not decisions["a"].replayed
        assert decisions["b"].replayed and decisions["b"].event == decisions["a"].event
        assert sandbox.state.calls["credential/add"] == 1
        credentials = [e for e in sandbox.state.log if e["call"] == "credential"]
        assert [e["task"] for e in credentials] == ["add"]
    finally:
        for liveness in (first_liveness, second_liveness):
            liveness.stopped.set()
            liveness.join()
