"""A real worker process against the real broker and a real sandbox, for integration tests.

``WorkerRig`` declares the topology under a unique prefix, binds an event tap queue to the
events exchange, starts ``provisioner run`` as a subprocess with small timing constants,
and offers publish / wait-for-events helpers that poll with deadlines.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pika

from contracts.examples import create_customer_body
from sandbox.rigs import declare_durable_tap, free_port, wait_until
from worker.broker.topology import Topology
from worker.store import open_store
from worker.store.order import Backend, OrderStore

FAST_RETRY_DELAYS = "300ms,600ms"
TEST_PARTITIONS = 4  # few partition queues: each quorum queue costs the broker time to create


class WorkerRig:
    def __init__(
        self, amqp_url: str, prefix: str, sandbox: Any, tmp_path: Path, **env: str
    ) -> None:
        self.amqp_url = amqp_url
        self.prefix = prefix
        self.sandbox = sandbox
        self.tmp_path = tmp_path
        self.topology = Topology(prefix, (0.3, 0.6), 20, TEST_PARTITIONS)
        self.env_overrides = env
        self.processes: list[subprocess.Popen[bytes]] = []
        self.tap = f"{prefix}.test-tap"
        self._order_store: OrderStore | None = None
        self.events: list[dict[str, Any]] = []
        self.reconnect()

    def reconnect(self) -> None:
        """(Re)open the test's own connection; the tap is durable so a broker restart keeps it."""
        self.connection = wait_until(self._try_connect, 60, "broker accepting connections")
        self.channel = self.connection.channel()
        self.topology.declare(self.channel)
        self.channel.confirm_delivery()
        declare_durable_tap(self.channel, self.topology, self.tap)

    def _try_connect(self) -> Any:
        try:
            return pika.BlockingConnection(pika.URLParameters(self.amqp_url))
        except pika.exceptions.AMQPError:
            return None

    # -- the worker process -----------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            PROVISIONER_AMQP_URL=self.amqp_url,
            PROVISIONER_API_URL=self.sandbox.url,
            PROVISIONER_API_USER=self.sandbox.api_user,
            PROVISIONER_API_KEY=self.sandbox.api_key,
            PROVISIONER_API_TIMEOUT="1",
            PROVISIONER_STORE_URL=f"sqlite:///{self.tmp_path / 'store.db'}",
            PROVISIONER_PREFIX=self.prefix,
            PROVISIONER_RETRY_DELAYS=FAST_RETRY_DELAYS,
            PROVISIONER_HTTP_PORT=str(free_port()),
            PROVISIONER_CONCURRENCY="8",
            PROVISIONER_IMMEDIATE_RETRY_BUDGET="3",
            PROVISIONER_WORKER_HEARTBEAT="0.5",
            PROVISIONER_WORKER_DEAD_AFTER="2",
            PROVISIONER_DRAIN_TIMEOUT="10",
            PROVISIONER_LOG_FORMAT="json",
            PROVISIONER_PARTITIONS=str(TEST_PARTITIONS),
        )
        env.update(self.env_overrides)
        env.update(extra)
        return env

    def start_worker(self, **extra: str) -> subprocess.Popen[bytes]:
        log_path = self.tmp_path / f"worker-{len(self.processes)}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker", "run"],
            env=self.env(**extra),
            stdout=log_path.open("wb"),
            stderr=subprocess.STDOUT,
        )
        proc.log_path = log_path  # type: ignore[attr-defined]
        self.processes.append(proc)
        wait_until(lambda: self.consumers() > 0 or proc.poll() is not None, 20, "worker consuming")
        assert proc.poll() is None, self.worker_log(proc)
        return proc

    def worker_log(self, proc: subprocess.Popen[bytes]) -> str:
        return Path(proc.log_path).read_text(errors="replace")  # type: ignore[attr-defined]

    def stop_worker(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
        proc.send_signal(sig)
        return proc.wait(timeout=30)

    def consumers(self) -> int:
        return int(self._declare_passive(self.topology.commands_queue).method.consumer_count)

    def partition_owners(self) -> dict[str, str]:
        """Lease name (``sequencer``, ``partition-<i>``) -> the worker process holding it."""
        if self._order_store is None:
            backend = open_store(self.env()["PROVISIONER_STORE_URL"])
            self._order_store = OrderStore(cast(Backend, backend))
        return self._order_store.leases()

    def order_rows(self) -> tuple[int, int]:
        """(holds, parked commands) in the store."""
        self.partition_owners()
        assert self._order_store is not None
        return self._order_store.counts()

    def owners_of_partitions(self) -> set[str]:
        """The processes consuming partitions, once every partition has an owner."""
        owners = self.partition_owners()
        held = [owner for name, owner in owners.items() if name.startswith("partition-")]
        return set(held) if len(held) == TEST_PARTITIONS else set()

    def waiting(self) -> int:
        """Commands not yet taken by a worker: in the intake or in a partition."""
        queues = [self.topology.commands_queue, *self.topology.partition_queues]
        return sum(self.depth(queue) for queue in queues)

    def depth(self, queue: str) -> int:
        return int(self._declare_passive(queue).method.message_count)

    def _declare_passive(self, queue: str) -> Any:
        return self.channel.queue_declare(queue, passive=True)

    # -- commands and events ----------------------------------------------------------

    def publish(self, command: dict[str, Any] | bytes, **props: Any) -> str:
        body = command if isinstance(command, bytes) else json.dumps(command).encode()
        props.setdefault("message_id", uuid.uuid4().hex)
        props.setdefault("delivery_mode", 2)
        routing_key = command.get("type", "unknown") if isinstance(command, dict) else "raw"
        self.channel.basic_publish(
            self.topology.commands_exchange,
            str(routing_key),
            body,
            pika.BasicProperties(**props),
        )
        return str(props["message_id"])

    def drain_tap(self) -> list[dict[str, Any]]:
        while True:
            method, _props, body = self.channel.basic_get(self.tap, auto_ack=True)
            if method is None:
                return self.events
            event = json.loads(body)
            event["_routing_key"] = method.routing_key
            self.events.append(event)

    def wait_events(self, count: int, timeout_s: float = 30.0, **match: Any) -> list[dict]:
        def matching() -> list[dict[str, Any]]:
            self.drain_tap()
            found = [e for e in self.events if all(e.get(k) == v for k, v in match.items())]
            return found if len(found) >= count else []

        return wait_until(matching, timeout_s, f"{count} events matching {match}")

    def events_for(self, key: str) -> list[dict[str, Any]]:
        self.drain_tap()
        return [e for e in self.events if e.get("idempotency_key") == key]

    def get_all(self, queue: str) -> Iterator[tuple[Any, Any, bytes]]:
        while True:
            method, props, body = self.channel.basic_get(queue, auto_ack=True)
            if method is None:
                return
            yield method, props, body

    def close(self) -> None:
        if self._order_store is not None:
            self._order_store._backend.close()  # type: ignore[attr-defined]
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        try:
            self.channel.queue_delete(self.tap)
            self.connection.close()
        except Exception:
            pass


def customer_command(username: str, key: str | None = None, **fields: Any) -> dict[str, Any]:
    command = create_customer_body(
        username, key=key or f"create-{username}", password="s3cret-pass"
    )
    command.update(fields)
    return command


__all__ = ["WorkerRig", "customer_command", "free_port", "sys"]
