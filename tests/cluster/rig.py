"""The cluster test's parts: a worker process with every node's URL, a publisher and an
event reader on a surviving node, and a readiness watcher."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pika
import urllib3

from contracts.examples import create_customer_body
from sandbox.rigs import declare_durable_tap, free_port, wait_until
from tests.fixtures.rabbit_cluster import ClusterNode, RabbitCluster
from worker.broker.topology import Topology

READY_POLL_S = 0.05
PUBLISH_BATCH = 100
STOP_TIMEOUT_S = 60


class ClusterWorker:
    """``provisioner run`` given the URLs of every node of the cluster."""

    def __init__(
        self, cluster: RabbitCluster, sandbox: Any, store_url: str, tmp_path: Path, prefix: str
    ) -> None:
        self.port = free_port()
        self.log_path = tmp_path / f"worker-{prefix}.log"
        env = dict(os.environ)
        env.update(
            PROVISIONER_AMQP_URL=",".join(node.url for node in cluster.nodes),
            PROVISIONER_API_URL=sandbox.url,
            PROVISIONER_API_USER=sandbox.api_user,
            PROVISIONER_API_KEY=sandbox.api_key,
            PROVISIONER_STORE_URL=store_url,
            PROVISIONER_PREFIX=prefix,
            PROVISIONER_RETRY_DELAYS="1s,2s",
            PROVISIONER_HTTP_PORT=str(self.port),
            PROVISIONER_CONCURRENCY="4",
            PROVISIONER_RECONNECT_MAX="2",
            PROVISIONER_LOG_FORMAT="json",
        )
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "worker", "run"], env=env, stdout=log, stderr=log
            )
        self.pid = self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def consuming_ports(self) -> list[int]:
        """The AMQP port of the node of each time it started consuming, in order."""
        ports = []
        for line in self.log().splitlines():
            if '"consuming"' in line:
                match = re.search(r"@127\.0\.0\.1:(\d+)/", line)
                if match:
                    ports.append(int(match.group(1)))
        return ports

    def stop(self) -> int:
        """SIGTERM and the exit code; a worker still running after ``STOP_TIMEOUT_S`` is
        killed (never left behind for the next test) and the failure shows its log."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT_S)
            raise AssertionError(
                f"worker still running after SIGTERM:\n{self.log()[-4000:]}"
            ) from None


class ReadinessWatch(threading.Thread):
    """Polls ``/readyz`` and keeps the sequence of distinct answers (True = ready)."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}/readyz"
        self.states: list[bool] = []
        self.stopped = threading.Event()
        self._http = urllib3.PoolManager(timeout=urllib3.Timeout(1.0), retries=False)

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                ready = self._http.request("GET", self.url).status == 200
            except urllib3.exceptions.HTTPError:
                ready = False
            if not self.states or self.states[-1] != ready:
                self.states.append(ready)
            self.stopped.wait(READY_POLL_S)


class Traffic:
    """Publishes commands and reads the events, connected to one node of the cluster."""

    def __init__(self, node: ClusterNode, topology: Topology) -> None:
        self.topology = topology
        self.connection = pika.BlockingConnection(pika.URLParameters(node.url))
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()
        self.tap = declare_durable_tap(self.channel, topology, f"{topology.prefix}.tap")
        self.events: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def publish_customers(self, run: str, count: int) -> list[str]:
        keys = []
        for index in range(count):
            username = f"{run}-{index}@example.com"
            body = create_customer_body(
                username, key=f"{run}-{index}", password="s3cret-pass", email=username
            )
            self.channel.basic_publish(
                self.topology.commands_exchange,
                "CreateCustomer",
                json.dumps(body).encode(),
                pika.BasicProperties(delivery_mode=2, message_id=uuid.uuid4().hex),
            )
            keys.append(body["idempotency_key"])
        return keys

    def read_events(self) -> int:
        """Take what the tap holds; the number of distinct keys with an event so far."""
        while True:
            method, _props, body = self.channel.basic_get(self.tap, auto_ack=True)
            if method is None:
                return len(self.events)
            event = json.loads(body)
            event["_routing_key"] = method.routing_key
            self.events[event["idempotency_key"]].append(event)

    def wait_for_events(self, keys: list[str], at_least: int, timeout_s: float) -> None:
        wanted = set(keys)
        wait_until(
            lambda: self.read_events() >= 0 and len(wanted & set(self.events)) >= at_least,
            timeout_s,
            f"events for {at_least} of the commands",
        )

    def depth(self, queue: str) -> int:
        return int(self.channel.queue_declare(queue, passive=True).method.message_count)

    def close(self) -> None:
        if self.connection.is_open:
            self.connection.close()


def effects(sandbox: Any) -> int:
    """Customers the sandbox really created (a repeated create is refused, not applied)."""
    return int(sandbox.control_get("calls")["applied"].get("add", 0))
