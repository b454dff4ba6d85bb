"""The soak's moving parts: the sandbox and worker processes, the broker, an event tap.

Everything is real: ``provisioner-sandbox`` and ``provisioner run`` subprocesses, the local
RabbitMQ (restarted with ``rabbitmqctl``), a durable tap queue on the events exchange.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pika
from pika.exceptions import AMQPError

from sandbox.rigs import (
    AMQP_URL,
    EventTap,
    SandboxProcess,
    connect,
    declare_durable_tap,
    delete_topology,
    free_port,
    wait_until,
)
from worker.broker.topology import Topology
from worker.config import PARTITIONS

WORKER_START_TIMEOUT_S = 60.0
BROKER_BACK_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0


class Broker:
    """The run's topology under its own prefix, a confirmed publisher, queue depths."""

    def __init__(self, prefix: str, retry_delays_s: tuple[float, ...], delivery_limit: int):
        self.topology = Topology(prefix, retry_delays_s, delivery_limit, PARTITIONS)
        self.tap_queue = f"{prefix}.tap"
        self.connection: Any = None
        self.reconnect()

    def reconnect(self) -> None:
        self.connection = connect()
        self.channel = self.connection.channel()
        self.topology.declare(self.channel)
        declare_durable_tap(self.channel, self.topology, self.tap_queue)
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
        return [
            self.topology.commands_queue,
            *self.topology.partition_queues,
            *self.topology.retry_queues,
        ]

    def restart(self) -> None:
        """Stop and start the RabbitMQ application, then reconnect (every client drops)."""
        if self.connection.is_open:
            self.connection.close()
        subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True)
        subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True)
        wait_until(
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
        delete_topology(self.channel, self.topology, [self.tap_queue])
        self.connection.close()


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
        wait_until(
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
        wait_until(lambda: self.broker.consumers() == 0, STOP_TIMEOUT_S, "the consumer to go")

    def stop(self) -> int:
        """SIGTERM: drains and returns what it holds; the exit code."""
        if self.current is None or self.current.poll() is not None:
            return 0
        self.current.send_signal(signal.SIGTERM)
        return self.current.wait(timeout=STOP_TIMEOUT_S)


__all__ = ["AMQP_URL", "Broker", "EventTap", "SandboxProcess", "Workers", "wait_until"]
