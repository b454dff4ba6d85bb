"""``make demo``: a sandbox, a worker and a realistic signup flow, with the events live.

Everything runs on embedded defaults: the local broker, a sandbox on 127.0.0.1 and the
SQLite store under ``.demo/``. Stops everything cleanly at the end (or on Ctrl-C).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pika

from sandbox.rigs import SandboxProcess, WaitTimeoutError, declare_tap, free_port, wait_until
from worker.broker.topology import Topology
from worker.config import load_settings

DEMO_DIR = Path(".demo")
EVENT_WAIT_S = 60.0
START_WAIT_S = 30.0
WORKER_STOP_S = 40.0
MARKS = {"succeeded": "OK ", "failed": "ERR", "rejected": "REJ"}


def _consumers(channel: Any, topology: Topology) -> int:
    return int(channel.queue_declare(topology.commands_queue, passive=True).method.consumer_count)


def signup_flow(customer: str) -> list[dict[str, Any]]:
    key = uuid.uuid4().hex[:8]
    create = _create_customer(customer, key)
    c = {"customer": customer}
    return [
        create,
        {
            "type": "AddCredential",
            "idempotency_key": f"{key}-cred",
            "credential_name": f"{customer}-smtp",
            "credential_password": "smtp-secret-42",
            **c,
        },
        {"type": "ActivateApp", "idempotency_key": f"{key}-app", "app": "clicktrack", **c},
        {
            "type": "ConfigureApp",
            "idempotency_key": f"{key}-conf",
            "app": "clicktrack",
            "settings": {"enable_text": "1"},
            **c,
        },
        {
            "type": "UpdateCustomerProfile",
            "idempotency_key": f"{key}-profile",
            "city": "Washington",
            **c,
        },
        {"type": "ListApps", "idempotency_key": f"{key}-apps", **c},
        {"type": "CreateCustomer", "idempotency_key": f"{key}-bad", "username": customer},
        create,  # a duplicate delivery: answered from the store, no second API call
    ]


def _create_customer(customer: str, key: str) -> dict[str, Any]:
    return {
        "type": "CreateCustomer",
        "idempotency_key": f"{key}-create",
        "username": customer,
        "password": "correct-horse-battery",
        "email": f"{customer}@example.com",
        "first_name": "Grace",
        "last_name": "Hopper",
        "address": "1 Compiler Way",
        "city": "Arlington",
        "state": "VA",
        "zip": "22201",
        "country": "US",
        "phone": "555-0100",
        "website": "example.com",
        "company": "Cobol Inc",
        "package": "Pro",
        "whitelabel": "sendgrid.me",
    }


def describe(event: dict[str, Any], routing_key: str, seen_ids: set[str]) -> str:
    outcome = routing_key.rsplit(".", 1)[-1]
    line = f"  {MARKS.get(outcome, '   ')} {event['type']:<24} {routing_key:<34}"
    line += f" customer={event.get('customer')} key={event.get('idempotency_key')}"
    if event["event_id"] in seen_ids:
        line += "\n        duplicate delivery: the stored event again, no second API call"
    seen_ids.add(event["event_id"])
    if "error" in event:
        line += f"\n        {event['error']['code']}: {event['error']['message'][:160]}"
    if "apps" in event:
        active = [a["name"] for a in event["apps"] if a.get("activated")]
        line += f"\n        {len(event['apps'])} apps, active: {', '.join(active) or '-'}"
    return line


def start_worker(sandbox: SandboxProcess) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.setdefault("PROVISIONER_API_URL", sandbox.url)
    env.setdefault("PROVISIONER_API_USER", sandbox.api_user)
    env.setdefault("PROVISIONER_API_KEY", sandbox.api_key)
    env.setdefault("PROVISIONER_STORE_URL", f"sqlite:///{DEMO_DIR / 'provisioner.db'}")
    env.setdefault("PROVISIONER_HTTP_PORT", str(free_port()))
    env.setdefault("PROVISIONER_LOG_FORMAT", "text")
    return subprocess.Popen(
        [sys.executable, "-m", "worker", "run"],
        env=env,
        stdout=(DEMO_DIR / "worker.log").open("wb"),
        stderr=subprocess.STDOUT,
    )


def main() -> int:
    DEMO_DIR.mkdir(exist_ok=True)
    settings = load_settings()
    topology = Topology.from_settings(settings)
    connection = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
    channel = connection.channel()
    topology.declare(channel)
    tap = declare_tap(channel, topology)
    sandbox = SandboxProcess(log_path=DEMO_DIR / "sandbox.log")
    try:
        worker = start_worker(sandbox)
        try:
            wait_until(lambda: _consumers(channel, topology) > 0, START_WAIT_S, "worker start")
            run_flow(channel, topology, tap)
        except WaitTimeoutError as exc:
            raise SystemExit(f"demo: {exc}") from None
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=WORKER_STOP_S)
    finally:
        sandbox.stop()
        connection.close()
    print(f"\nstopped cleanly; logs in {DEMO_DIR}/worker.log and {DEMO_DIR}/sandbox.log")
    return 0


def run_flow(channel: Any, topology: Topology, tap: str) -> None:
    customer = f"demo-{uuid.uuid4().hex[:6]}"
    commands = signup_flow(customer)
    print(f"publishing a signup flow for {customer} ({len(commands)} commands)\n")
    channel.confirm_delivery()
    for command in commands:
        props = pika.BasicProperties(
            content_type="application/json",
            delivery_mode=2,
            message_id=uuid.uuid4().hex,
            correlation_id=f"demo-{command['idempotency_key']}",
        )
        body = json.dumps(command).encode()
        channel.basic_publish(topology.commands_exchange, command["type"], body, props)
    seen, seen_ids = 0, set[str]()
    deadline = time.monotonic() + EVENT_WAIT_S
    for method, _props, body in channel.consume(tap, auto_ack=True, inactivity_timeout=0.2):
        if method is not None:
            print(describe(json.loads(body), method.routing_key, seen_ids), flush=True)
            seen += 1
        if seen == len(commands) or time.monotonic() > deadline:
            break
    channel.cancel()
    print(f"\n{seen} of {len(commands)} events received")


if __name__ == "__main__":
    sys.exit(main())
