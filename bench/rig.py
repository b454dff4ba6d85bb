"""The parts every throughput run needs: a sandbox process, a topology, a publisher, a tap.

Everything talks to the real broker on 127.0.0.1 and to a real ``provisioner-sandbox``
subprocess; nothing is mocked, so the numbers include every hop a production worker pays.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pika
import psycopg
import requests

from contracts.examples import create_customer_body
from sandbox import DEFAULT_API_KEY, DEFAULT_API_USER
from worker.broker.topology import Topology

AMQP_URL = os.environ.get("PROVISIONER_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
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


class Sandbox:
    """``provisioner-sandbox`` as a child process; ``reset`` and ``set_latency`` between runs."""

    def __init__(self) -> None:
        self.api_user, self.api_key = DEFAULT_API_USER, DEFAULT_API_KEY
        command = [sys.executable, "-m", "sandbox", "--port", "0"]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        match = READY_LINE_RE.search(line)
        if match is None:
            self.stop()
            raise RuntimeError(f"the sandbox did not start: {line!r}")
        self.url, _distributor, self.control_url = match.groups()

    def control(self, path: str, body: dict[str, Any] | None = None) -> Any:
        response = requests.post(
            self.control_url + path, json=body or {}, timeout=CONTROL_TIMEOUT_S
        )
        response.raise_for_status()
        return response.json()

    def reset(self, latency_ms: float) -> None:
        self.control("reset")
        self.control("faults", {"latency_ms": latency_ms})

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


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
        self.topology = Topology(self.prefix, RETRY_DELAYS_S, DELIVERY_LIMIT)
        self.tap_queue = f"{self.prefix}.tap"
        self.connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        self.channel = self.connection.channel()
        self.topology.declare(self.channel)
        self.channel.queue_declare(self.tap_queue, arguments={"x-queue-type": "classic"})
        self.channel.queue_bind(self.tap_queue, self.topology.events_exchange, "#")
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
            for name in [q.name for q in self.topology.queues()] + [self.tap_queue]:
                self.channel.queue_delete(name)
            for exchange in self.topology.exchanges():
                self.channel.exchange_delete(exchange.name)
            self.connection.close()


class EventTap(threading.Thread):
    """Consumes the run's tap queue on its own connection; records when each event arrived."""

    def __init__(self, queue: str) -> None:
        super().__init__(name="event-tap", daemon=True)
        self.queue = queue
        self.received_ns: dict[str, int] = {}
        self.not_succeeded = 0
        self._lock = threading.Lock()
        self._stop_requested = threading.Event()
        self._ready = threading.Event()

    def run(self) -> None:
        connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        channel = connection.channel()
        channel.basic_qos(prefetch_count=TAP_PREFETCH)
        channel.basic_consume(self.queue, self._on_event, auto_ack=True)
        self._ready.set()
        while not self._stop_requested.is_set():
            connection.process_data_events(time_limit=POLL_S)
        connection.close()

    def _on_event(self, _channel: Any, method: Any, _props: Any, body: bytes) -> None:
        now_ns = time.time_ns()
        key = json.loads(body).get("idempotency_key", "")
        with self._lock:
            self.received_ns.setdefault(key, now_ns)
            if not method.routing_key.endswith(".succeeded"):
                self.not_succeeded += 1

    def start_and_wait(self) -> None:
        self.start()
        self._ready.wait(CONTROL_TIMEOUT_S)

    def count(self, keys: set[str] | None = None) -> int:
        with self._lock:
            if keys is None:
                return len(self.received_ns)
            return sum(1 for key in keys if key in self.received_ns)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.received_ns)

    def stop(self) -> None:
        self._stop_requested.set()
        self.join(CONTROL_TIMEOUT_S)
