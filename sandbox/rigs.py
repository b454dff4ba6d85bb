"""The rigs the tests, the benchmarks and the demo share: waiting on a condition, a free port,
the sandbox as a child process, an event tap on a topology, and that topology's teardown.

Here, in the installed ``sandbox`` package, because the demo runs from it; never imported by
``worker/`` (nor shipped in its image).
"""

from __future__ import annotations

import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any, TypeVar

import pika
import requests
from pika.exceptions import AMQPError

from sandbox.remote import ControlClient
from sandbox.server import DEFAULT_API_KEY, DEFAULT_API_USER
from worker.broker.topology import Topology

T = TypeVar("T")

AMQP_URL = os.environ.get("PROVISIONER_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
POLL_S = 0.02
SANDBOX_START_TIMEOUT_S = 20.0
SANDBOX_STOP_TIMEOUT_S = 10.0
BROKER_BACK_TIMEOUT_S = 120.0
TAP_PREFETCH = 500
TAP_POLL_S = 0.05
TAP_STOP_TIMEOUT_S = 30.0
READY_LINE_RE = re.compile(r"apiv2 (\S+) distributor (\S+) control (\S+)")


class WaitTimeoutError(AssertionError):
    """A condition did not hold in time: a failure under pytest, a message elsewhere."""


def wait_until(
    predicate: Callable[[], T], timeout_s: float = 10.0, message: str = "", poll_s: float = POLL_S
) -> T:
    """Return the first truthy value of ``predicate()``; ``WaitTimeoutError`` after ``timeout_s``.
    The only way the tests, the bench and the demo wait: never a bare sleep."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeoutError(
                f"timed out after {timeout_s}s waiting for {message or predicate}"
            )
        time.sleep(poll_s)


# Ports handed to a process that binds them later: below the kernel's ephemeral range, where
# no outgoing connection takes one between the check and the bind (a RabbitMQ node of the
# cluster test once failed to start with ``dist_port_already_used`` on a port from that range).
SERVICE_PORT_LOW = 20000
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
FREE_PORT_TRIES = 200


def free_port() -> int:
    """A port free on every address now, outside the ephemeral range when the kernel leaves
    room below it (for a process that cannot be told to pick port 0)."""
    high = _ephemeral_low()
    rng = random.SystemRandom()
    for _ in range(FREE_PORT_TRIES if high > SERVICE_PORT_LOW else 0):
        port = rng.randrange(SERVICE_PORT_LOW, high)
        if _bindable(port):
            return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ephemeral_low() -> int:
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("0.0.0.0", port))  # every address: an Erlang node listens on all
        except OSError:
            return False
    return True


def connect(amqp_url: str = AMQP_URL, timeout_s: float = BROKER_BACK_TIMEOUT_S) -> Any:
    """A blocking connection, waiting for a broker that is (re)starting."""

    def attempt() -> Any:
        try:
            return pika.BlockingConnection(pika.URLParameters(amqp_url))
        except AMQPError:
            return None

    return wait_until(attempt, timeout_s, "the broker to accept connections", poll_s=0.1)


def sandbox_command() -> list[str]:
    """The installed ``provisioner-sandbox`` console script, else ``python -m sandbox``."""
    script = Path(sys.executable).with_name("provisioner-sandbox")
    return [str(script)] if script.exists() else [sys.executable, "-m", "sandbox"]


class SandboxProcess(ControlClient):
    """``provisioner-sandbox`` as a child process on a port it picks itself (no race between
    probing and binding); ``.url``, ``.distributor_url``, ``.control_url``, ``.port``, the
    credentials, and the control calls of ``ControlClient``."""

    def __init__(self, *extra_args: str, log_path: Path | None = None) -> None:
        self.api_user, self.api_key = DEFAULT_API_USER, DEFAULT_API_KEY
        # stderr goes to a file: a pipe nobody reads could fill up and block the server.
        self.stderr: IO[str] = (  # closed in stop()
            log_path.open("w+") if log_path is not None else tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        )
        self.process = subprocess.Popen(
            [*sandbox_command(), "--port", "0", *extra_args],
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.process.stdout is not None
        ready_line = self.process.stdout.readline()
        match = READY_LINE_RE.search(ready_line)
        if match is None:
            self.process.kill()
            self.process.wait(timeout=SANDBOX_STOP_TIMEOUT_S)
            raise RuntimeError(f"sandbox did not start: {ready_line!r} {self.stderr_text()!r}")
        self.url, self.distributor_url, self.control_url = match.groups()
        self.port = int(self.url.split(":")[2].split("/")[0])
        wait_until(self.answers, SANDBOX_START_TIMEOUT_S, "the sandbox process to answer")

    def stderr_text(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read()

    def answers(self) -> bool:
        try:
            return bool(self.control_get("health")["status"] == "ok")
        except requests.RequestException:
            return False

    def stop(self) -> int:
        """SIGTERM, then the exit code (killing it only if it ignores SIGTERM)."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(timeout=SANDBOX_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        finally:
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.stderr.close()


def declare_tap(channel: Any, topology: Topology, queue: str = "", **arguments: Any) -> str:
    """A queue bound to every event of ``topology``; its name (server-named and exclusive when
    ``queue`` is empty). Delete a named one with ``delete_topology(..., extra_queues=[queue])``."""
    declared = channel.queue_declare(queue, exclusive=not queue, **arguments)
    name = str(declared.method.queue)
    channel.queue_bind(name, topology.events_exchange, "#")
    return name


def declare_durable_tap(channel: Any, topology: Topology, queue: str) -> str:
    """A tap that keeps its events through a broker restart, or the loss of a node: durable,
    and a quorum queue (replicated over a cluster's nodes)."""
    return declare_tap(channel, topology, queue, durable=True, arguments={"x-queue-type": "quorum"})


def delete_topology(channel: Any, topology: Topology, extra_queues: Iterable[str] = ()) -> None:
    """Delete every queue and exchange ``topology`` names, and ``extra_queues``."""
    for name in [q.name for q in topology.queues()] + list(extra_queues):
        channel.queue_delete(name)
    for exchange in topology.exchanges():
        channel.exchange_delete(exchange.name)


class EventTap(threading.Thread):
    """Consumes a tap queue on its own connection: every event in arrival order (with its
    ``_routing_key``) and when each key was first answered. Survives a broker restart by
    reconnecting; with ``ack`` (a durable tap) a redelivered event shows up twice."""

    def __init__(self, queue: str, *, ack: bool = False, amqp_url: str = AMQP_URL) -> None:
        super().__init__(name="event-tap", daemon=True)
        self.queue, self._ack, self._amqp_url = queue, ack, amqp_url
        self.events: list[dict[str, Any]] = []
        self.received_ns: dict[str, int] = {}
        self.not_succeeded = 0
        self._lock = threading.Lock()
        self._stop_requested = threading.Event()
        self._ready = threading.Event()

    def run(self) -> None:
        while not self._stop_requested.is_set():
            try:
                self._consume()
            except AMQPError:
                time.sleep(TAP_POLL_S)  # the broker is restarting: connect() waits for it

    def _consume(self) -> None:
        connection = connect(self._amqp_url)
        try:
            channel = connection.channel()
            channel.basic_qos(prefetch_count=TAP_PREFETCH)
            channel.basic_consume(self.queue, self._on_event, auto_ack=not self._ack)
            self._ready.set()
            while not self._stop_requested.is_set():
                connection.process_data_events(time_limit=TAP_POLL_S)
        finally:
            if connection.is_open:
                connection.close()

    def _on_event(self, channel: Any, method: Any, _props: Any, body: bytes) -> None:
        now_ns = time.time_ns()
        event = json.loads(body)
        event["_routing_key"] = method.routing_key
        with self._lock:
            self.events.append(event)
            self.received_ns.setdefault(event.get("idempotency_key", ""), now_ns)
            if not method.routing_key.endswith(".succeeded"):
                self.not_succeeded += 1
        if self._ack:
            channel.basic_ack(method.delivery_tag)

    def start_and_wait(self) -> None:
        self.start()
        self._ready.wait(TAP_STOP_TIMEOUT_S)

    def count(self, keys: set[str] | None = None) -> int:
        """Keys answered (of ``keys``, or all)."""
        with self._lock:
            if keys is None:
                return len(self.received_ns)
            return sum(1 for key in keys if key in self.received_ns)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.events)

    def received_snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.received_ns)

    def keys_answered(self) -> set[str]:
        with self._lock:
            return set(self.received_ns)

    def stop(self) -> None:
        self._stop_requested.set()
        self.join(TAP_STOP_TIMEOUT_S)
