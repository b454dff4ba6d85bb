"""The worker's probes and metrics over real HTTP, with the broker really going away."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.proxy import CuttableProxy
from tests.fixtures.wait import wait_until
from tests.integration.harness import WorkerRig, customer_command

pytestmark = pytest.mark.integration


@pytest.fixture
def proxy(amqp_url: str) -> Iterator[CuttableProxy]:
    parts = urlsplit(amqp_url)
    proxy = CuttableProxy(parts.hostname or "127.0.0.1", parts.port or 5672)
    yield proxy
    proxy.close()


def via(amqp_url: str, port: int) -> str:
    parts = urlsplit(amqp_url)
    netloc = parts.netloc.rsplit(":", 1)[0] if ":" in parts.netloc.split("@")[-1] else parts.netloc
    return urlunsplit(parts._replace(netloc=f"{netloc}:{port}"))


def status(port: int, path: str) -> int:
    try:
        return requests.get(f"http://127.0.0.1:{port}{path}", timeout=2).status_code
    except requests.RequestException:
        return 0


def metric(port: int, name: str, **labels: str) -> float:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def test_probes_follow_the_broker_but_liveness_never_fails_for_it(
    rig: WorkerRig, proxy: CuttableProxy, amqp_url: str
) -> None:
    # Given a worker connected through a proxy we can cut
    worker_env = rig.env(PROVISIONER_AMQP_URL=via(amqp_url, proxy.port))
    port = int(worker_env["PROVISIONER_HTTP_PORT"])
    rig.start_worker(
        PROVISIONER_AMQP_URL=worker_env["PROVISIONER_AMQP_URL"],
        PROVISIONER_HTTP_PORT=str(port),
        PROVISIONER_RECONNECT_MAX="0.5",
    )
    wait_until(lambda: status(port, "/readyz") == 200, 10, "ready")
    assert status(port, "/healthz") == 200
    # When the broker goes away
    proxy.cut()
    # Then readiness fails while liveness stays up
    wait_until(lambda: status(port, "/readyz") == 503, 15, "not ready without a broker")
    assert status(port, "/healthz") == 200
    assert metric(port, "provisioner_broker_connected") == 0
    # And when it comes back the worker reconnects by itself and works
    proxy.restore()
    wait_until(lambda: status(port, "/readyz") == 200, 30, "ready again")
    assert metric(port, "provisioner_broker_reconnects_total") >= 1
    rig.publish(customer_command("after-cut", key="k-after-cut"))
    (event,) = rig.wait_events(1, idempotency_key="k-after-cut")
    assert event["type"] == "CustomerCreated"


def test_metrics_after_a_known_sequence(rig: WorkerRig) -> None:
    # Given a worker
    port = int(rig.env()["PROVISIONER_HTTP_PORT"])
    rig.start_worker(PROVISIONER_HTTP_PORT=str(port))
    # When it handles one success, its duplicate, one invalid command and one API refusal
    create = customer_command("met", key="k-met")
    rig.publish(create)
    rig.wait_events(1, idempotency_key="k-met")
    rig.publish(create)
    rig.publish({"type": "CreateCustomer", "idempotency_key": "k-inv"})
    rig.publish({"type": "EnableCustomer", "idempotency_key": "k-404", "customer": "nobody"})
    rig.wait_events(4)

    # Then the counters say exactly that
    def settled() -> bool:
        return metric(port, "provisioner_commands_total", outcome="rejected") == 1

    wait_until(settled, 10, "metrics updated")
    total = "provisioner_commands_total"
    assert metric(port, total, command_type="CreateCustomer", outcome="succeeded") == 2
    assert metric(port, total, command_type="CreateCustomer", outcome="rejected") == 1
    assert metric(port, total, command_type="EnableCustomer", outcome="failed") == 1
    assert metric(port, "provisioner_idempotent_replays_total", command_type="CreateCustomer") == 1
    assert metric(port, "provisioner_dead_lettered_total", reason="rejected") == 1
    assert metric(port, "provisioner_dead_lettered_total", reason="failed") == 1
    assert metric(port, "provisioner_in_flight_commands") == 0
    assert metric(port, "provisioner_broker_connected") == 1
    assert metric(port, "provisioner_api_request_duration_seconds_count", call="add") == 1
    assert metric(port, "provisioner_last_processed_timestamp_seconds") > 0
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    for secret in ("s3cret-pass", rig.sandbox.api_key, "guest:guest"):
        assert secret not in text


def test_one_json_log_line_per_outcome_and_no_secret_in_logs(rig: WorkerRig) -> None:
    # Given a worker handling a create with a password and a credential with its password
    worker = rig.start_worker()
    rig.publish(customer_command("logs", key="k-logs"), correlation_id="corr-logs")
    rig.publish(
        {
            "type": "AddCredential",
            "idempotency_key": "k-logs-cred",
            "customer": "logs",
            "credential_name": "smtp-logs",
            "credential_password": "cred-pass-logs",
        }
    )
    rig.wait_events(2)
    rig.stop_worker(worker)
    # Then every line is JSON, each command has one outcome line with its fields
    lines = [json.loads(line) for line in rig.worker_log(worker).splitlines() if line.strip()]
    outcomes = [line for line in lines if line.get("outcome")]
    by_key = {line["idempotency_key"]: line for line in outcomes}
    assert set(by_key) == {"k-logs", "k-logs-cred"}
    created = by_key["k-logs"]
    assert created["command_type"] == "CreateCustomer"
    assert created["correlation_id"] == "corr-logs"
    assert created["customer"] == "logs"
    assert created["outcome"] == "succeeded"
    assert created["attempt"] == 1
    assert created["duration_s"] >= 0
    # And no secret appears anywhere in the log
    text = rig.worker_log(worker)
    for secret in ("s3cret-pass", "cred-pass-logs", rig.sandbox.api_key, "guest:guest"):
        assert secret not in text
