"""The parts every throughput run needs: a sandbox process, a topology, a publisher, a tap
(the shared ones from ``sandbox.rigs``).

Everything talks to the real broker on 127.0.0.1 and to a real ``provisioner-sandbox``
subprocess; nothing is mocked, so the numbers include every hop a production worker pays.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pika
import psycopg

from contracts.examples import create_customer_body
from sandbox.rigs import AMQP_URL, EventTap, SandboxProcess, declare_tap, delete_topology
from worker.broker.topology import Topology
from worker.config import PARTITIONS

PG_URL = os.environ.get(
    "PROVISIONER_TEST_PG_URL",
    "postgresql://provisioner:provisioner@127.0.0.1:5432/provisioner_test",
)
RETRY_DELAYS_S = (30.0,)
DELIVERY_LIMIT = 20
READY_LINE_RE = re.compile(r"apiv2 (\S+) distributor (\S+) control (\S+)")
CONTROL_TIMEOUT_S = 10.0
PUBLISHED_AT_HEADER = "x-bench-published-at-ns"
TAP_PREFETCH = 500
QUEUE_FILL_TIMEOUT_S = 30.0
POLL_S = 0.05


def reset_sandbox(sandbox: SandboxProcess, latency_ms: float) -> None:
    """A fresh sandbox state with only ``latency_ms`` as its fault, between runs."""
    sandbox.control_post("reset")
    sandbox.control_post("faults", {"latency_ms": latency_ms})


@contextlib.contextmanager
def postgres_store(run_prefix: str) -> Iterator[str]:
    """A store URL on a fresh PostgreSQL schema for one run, dropped after it."""
    schema = f"{run_prefix}_store"
    with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            separator = "&" if "?" in PG_URL else "?"
            yield f"{PG_URL}{separator}options={quote(f'-csearch_path={schema}')}"
        finally:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def create_customer(run_id: str, index: int) -> dict[str, Any]:
    username = f"b{run_id}-{index}@example.com"
    return create_customer_body(
        username, key=f"bench-{run_id}-{index}", password="s3cret-pass", email=username
    )


class BenchBroker:
    """One run's topology under a unique prefix, its publisher, and its cleanup."""

    def __init__(self) -> None:
        self.prefix = f"bench{uuid.uuid4().hex[:8]}"
        self.topology = Topology(self.prefix, RETRY_DELAYS_S, DELIVERY_LIMIT, PARTITIONS)
        self.tap_queue = f"{self.prefix}.tap"
        self.connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        self.channel = self.connection.channel()
        self.topology.declare(self.channel)
        declare_tap(
            self.channel, self.topology, self.tap_queue, arguments={"x-queue-type": "classic"}
        )
        self.published_ns: dict[str, int] = {}

    def publish(self, command: dict[str, Any]) -> None:
        now_ns = time.time_ns()
        self.published_ns[command["idempotency_key"]] = now_ns
        props = pika.BasicProperties(
            content_type="application/json",
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=uuid.uuid4().hex,
            headers={PUBLISHED_AT_HEADER: now_ns},
        )
        body = json.dumps(command).encode()
        self.channel.basic_publish(self.topology.commands_exchange, command["type"], body, props)

    def wait_queued(self, count: int) -> None:
        """Until the commands queue holds ``count`` messages (publishes are unconfirmed)."""
        deadline = time.monotonic() + QUEUE_FILL_TIMEOUT_S
        while self.depth(self.topology.commands_queue) < count:
            if time.monotonic() > deadline:
                raise RuntimeError("the commands queue did not fill up")
            self.connection.sleep(POLL_S)

    def depth(self, queue: str) -> int:
        return int(self.channel.queue_declare(queue, passive=True).method.message_count)

    def consumers(self) -> int:
        queue = self.topology.commands_queue
        return int(self.channel.queue_declare(queue, passive=True).method.consumer_count)

    def close(self) -> None:
        """Delete the run's queues and exchanges, on a new connection if the broker dropped
        ours (another user of this machine may restart it mid-run)."""
        with contextlib.suppress(pika.exceptions.AMQPError):
            if not self.connection.is_open:
                self.connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
                self.channel = self.connection.channel()
            delete_topology(self.channel, self.topology, [self.tap_queue])
            self.connection.close()


__all__ = [
    "AMQP_URL",
    "BenchBroker",
    "EventTap",
    "SandboxProcess",
    "create_customer",
    "reset_sandbox",
]
