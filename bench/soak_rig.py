"""The soak's moving parts: the sandbox and worker processes, the broker, an event tap.

Everything is real: ``provisioner-sandbox`` and ``provisioner run`` subprocesses, the local
RabbitMQ (restarted with ``rabbitmqctl``), a durable tap queue on the events exchange.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pika
import requests
from pika.exceptions import AMQPError

from sandbox import DEFAULT_API_KEY, DEFAULT_API_USER
from worker.broker.topology import Topology

T = TypeVar("T")

AMQP_URL = os.environ.get("PROVISIONER_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
READY_LINE_RE = re.compile(r"apiv2 (\S+) distributor (\S+) control (\S+)")
CONTROL_TIMEOUT_S = 30.0
POLL_S = 0.1
TAP_PREFETCH = 500
WORKER_START_TIMEOUT_S = 60.0
BROKER_BACK_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0


def wait_for(predicate: Callable[[], T], timeout_s: float, what: str) -> T:
    """The first truthy value of ``predicate()``; RuntimeError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise RuntimeError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(POLL_S)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def connect() -> Any:
    def attempt() -> Any:
        try:
            return pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        except AMQPError:
            return None

    return wait_for(attempt, BROKER_BACK_TIMEOUT_S, "the broker to accept connections")


class SandboxProcess:
    """``provisioner-sandbox`` as a child process, driven through its control endpoint."""

    def __init__(self, log_path: Path) -> None:
        self.api_user, self.api_key = DEFAULT_API_USER, DEFAULT_API_KEY
        command = [sys.executable, "-m", "sandbox", "--port", "0"]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=log_path.open("wb"), text=True
        )
        assert self.process.stdout is not None
        match = READY_LINE_RE.search(self.process.stdout.readline())
        if match is None:
            self.stop()
            raise RuntimeError(f"the sandbox did not start; see {log_path}")
        self.url, _distributor, self.control_url = match.groups()

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        url = self.control_url.rstrip("/") + "/" + path
        response = requests.request(method, url, json=body, timeout=CONTROL_TIMEOUT_S)
        response.raise_for_status()
        return response.json()

    def set_faults(self, faults: dict[str, Any]) -> Any:
        return self._request("POST", "faults", faults)

    def clear_faults(self) -> Any:
        return self._request("DELETE", "faults")

    def faults(self) -> Any:
        return self._request("GET", "faults")

    def applied_log(self) -> list[dict[str, Any]]:
        return list(self._request("GET", "log")["log"])

    def calls(self) -> dict[str, dict[str, int]]:
        return dict(self._request("GET", "calls"))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=STOP_TIMEOUT_S)


class Broker:
    """The run's topology under its own prefix, a confirmed publisher, queue depths."""

    def __init__(self, prefix: str, retry_delays_s: tuple[float, ...], delivery_limit: int):
        self.topology = Topology(prefix, retry_delays_s, delivery_limit)
        self.tap_queue = f"{prefix}.tap"
        self.connection: Any = None
        self.reconnect()

    def reconnect(self) -> None:
        self.connection = connect()
        self.channel = self.connection.channel()
        self.topology.declare(self.channel)
        self.channel.queue_declare(
            self.tap_queue, durable=True, arguments={"x-queue-type": "quorum"}
        )
        self.channel.queue_bind(self.tap_queue, self.topology.events_exchange, "#")
        self.channel.confirm_delivery()

    def publish_all(self, commands: list[dict[str, Any]]) -> None:
        """Publish with confirms; a connection lost midway (someone restarted the broker)
        resumes from the unconfirmed command, which may then arrive twice: a duplicate
        delivery the worker must absorb anyway."""
        sent = 0
        while sent < len(commands):
            try:
                for command in commands[sent:]:
                    self._publish(command)
                    sent += 1
            except AMQPError:
                self.reconnect()

    def _publish(self, command: dict[str, Any]) -> None:
        properties = pika.BasicProperties(
            content_type="application/json",
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=uuid.uuid4().hex,
        )
        body = json.dumps(command).encode()
        self.channel.basic_publish(
            self.topology.commands_exchange, command["type"], body, properties
        )

    def _passive(self, queue: str) -> Any:
        try:
            return self.channel.queue_declare(queue, passive=True).method
        except AMQPError:
            self.reconnect()
            return self.channel.queue_declare(queue, passive=True).method

    def depth(self, queue: str) -> int:
        return int(self._passive(queue).message_count)

    def consumers(self) -> int:
        return int(self._passive(self.topology.commands_queue).consumer_count)

    def work_queues(self) -> list[str]:
        return [self.topology.commands_queue, *self.topology.retry_queues]

    def restart(self) -> None:
        """Stop and start the RabbitMQ application, then reconnect (every client drops)."""
        if self.connection.is_open:
            self.connection.close()
        subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True)
        subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True)
        wait_for(
            lambda: (
                subprocess.run(
                    ["rabbitmq-diagnostics", "-q", "check_port_connectivity"], capture_output=True
                ).returncode
                == 0
            ),
            BROKER_BACK_TIMEOUT_S,
            "the broker's port to be back",
        )
        self.reconnect()

    def delete_everything(self) -> None:
        if not self.connection.is_open:
            self.reconnect()
        for name in [q.name for q in self.topology.queues()] + [self.tap_queue]:
            self.channel.queue_delete(name)
        for exchange in self.topology.exchanges():
            self.channel.exchange_delete(exchange.name)
        self.connection.close()


class EventTap(threading.Thread):
    """Every event of the run, in arrival order; survives a broker restart (durable queue,
    manual acks: a redelivered event shows up twice, which the checks allow for)."""

    def __init__(self, queue: str) -> None:
        super().__init__(name="soak-event-tap", daemon=True)
        self.queue = queue
        self.events: list[dict[str, Any]] = []
        self.deliveries = 0
        self._lock = threading.Lock()
        self._stop_requested = threading.Event()

    def run(self) -> None:
        while not self._stop_requested.is_set():
            try:
                self._consume()
            except AMQPError:
                time.sleep(POLL_S)  # the broker is restarting: connect() waits for it

    def _consume(self) -> None:
        connection = connect()
        try:
            channel = connection.channel()
            channel.basic_qos(prefetch_count=TAP_PREFETCH)
            channel.basic_consume(self.queue, self._on_event, auto_ack=False)
            while not self._stop_requested.is_set():
                connection.process_data_events(time_limit=POLL_S)
        finally:
            if connection.is_open:
                connection.close()

    def _on_event(self, channel: Any, method: Any, _props: Any, body: bytes) -> None:
        event = json.loads(body)
        event["_routing_key"] = method.routing_key
        with self._lock:
            self.events.append(event)
            self.deliveries += 1
        channel.basic_ack(method.delivery_tag)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.events)

    def keys_answered(self) -> set[str]:
        with self._lock:
            return {e.get("idempotency_key", "") for e in self.events}

    def stop(self) -> None:
        self._stop_requested.set()
        self.join(CONTROL_TIMEOUT_S)


class Workers:
    """``provisioner run`` subprocesses sharing one store; at most one alive at a time."""

    def __init__(self, env: dict[str, str], broker: Broker, log_dir: Path) -> None:
        self.env = env
        self.broker = broker
        self.log_dir = log_dir
        self.current: subprocess.Popen[bytes] | None = None
        self.started = 0

    def start(self) -> None:
        env = {**os.environ, **self.env, "PROVISIONER_HTTP_PORT": str(free_port())}
        log = (self.log_dir / f"worker-{self.started}.log").open("wb")
        self.started += 1
        # Its own session: a kill takes the supervisor and its worker processes at once,
        # as a crashed pod would.
        process = subprocess.Popen(
            [sys.executable, "-m", "worker", "run"],
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        self.current = process
        wait_for(
            lambda: self.broker.consumers() > 0 or process.poll() is not None,
            WORKER_START_TIMEOUT_S,
            "the worker to consume",
        )
        if process.poll() is not None:
            raise RuntimeError(f"the worker exited with {process.returncode}; see {log.name}")

    def kill(self) -> None:
        """SIGKILL to every process of the worker: no drain, no goodbye; the broker
        redelivers what it held."""
        assert self.current is not None
        os.killpg(self.current.pid, signal.SIGKILL)
        self.current.wait(timeout=STOP_TIMEOUT_S)
        wait_for(lambda: self.broker.consumers() == 0, STOP_TIMEOUT_S, "the consumer to go")

    def stop(self) -> int:
        """SIGTERM: drains and returns what it holds; the exit code."""
        if self.current is None or self.current.poll() is not None:
            return 0
        self.current.send_signal(signal.SIGTERM)
        return self.current.wait(timeout=STOP_TIMEOUT_S)
