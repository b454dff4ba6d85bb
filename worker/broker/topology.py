"""The exchanges and queues of one deployment, named from a prefix, declared idempotently.

```
<p>.commands (topic) --#--> <p>.commands (quorum, delivery limit) --dead-letter--> <p>.dead-letter
<p>.retry (direct) --<label>--> <p>.retry.<label> (quorum, queue TTL) --dead-letter--> <p>.commands
<p>.events (topic)
<p>.dead-letter (topic) --#--> <p>.dead-letter (quorum)
<p>.partitions (direct) --<i>--> <p>.commands.p<i> (quorum, single active consumer, delivery
    limit) for i < partitions, fed by the sequencer from <p>.commands (docs/ordering.md)
```

One TTL queue per delay tier because a per-message TTL only expires at the head of a queue:
a short delay behind a long one would wait for the long one. Quorum queues accept a
queue-wide ``x-message-ttl`` since RabbitMQ 3.10 (checked on the local 3.10.8 broker).
Dead-lettering is ``at-least-once`` (a message is removed from the source only once the
target confirmed it), which RabbitMQ only allows together with ``x-overflow=reject-publish``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from pika.exceptions import ChannelClosedByBroker

from worker.broker.group_size import GROUP_SIZE_ARG, declare_queue
from worker.config import QUORUM_GROUP_SIZE, Settings

QUORUM = "quorum"
AT_LEAST_ONCE = "at-least-once"
REJECT_PUBLISH = "reject-publish"
NOT_FOUND = 404
PRECONDITION_FAILED = 406
_UNITS_MS = (("h", 3_600_000), ("m", 60_000), ("s", 1_000))


def tier_label(delay_s: float) -> str:
    """``30.0`` -> ``30s``, ``120`` -> ``2m``, ``3600`` -> ``1h``, ``0.5`` -> ``500ms``."""
    delay_ms = round(delay_s * 1000)
    if delay_ms <= 0:
        raise ValueError(f"a retry delay must be positive, got {delay_s!r}")
    for unit, size_ms in _UNITS_MS:
        if delay_ms % size_ms == 0:
            return f"{delay_ms // size_ms}{unit}"
    return f"{delay_ms}ms"


@dataclass(frozen=True)
class QueueSpec:
    name: str
    arguments: dict[str, Any]
    bindings: tuple[tuple[str, str], ...]  # (exchange, routing key)


@dataclass(frozen=True)
class ExchangeSpec:
    name: str
    kind: str


class Topology:
    """Names and declarations of every exchange and queue under ``prefix``."""

    def __init__(
        self,
        prefix: str,
        retry_delays_s: Sequence[float],
        delivery_limit: int,
        partitions: int = 0,
        *,
        quorum_group_size: int = QUORUM_GROUP_SIZE,
    ) -> None:
        if not prefix:
            raise ValueError("the topology prefix must not be empty")
        self.partitions = int(partitions)
        self.partitions_exchange = f"{prefix}.partitions"
        self.prefix = prefix
        # 0: the broker's default (the queue's arguments then do not carry it). An existing
        # queue keeps the size it was created with (``worker.broker.group_size``).
        self.quorum_group_size = quorum_group_size
        self.retry_delays_s = tuple(float(d) for d in retry_delays_s)
        self.delivery_limit = int(delivery_limit)
        self.commands_exchange = f"{prefix}.commands"
        self.commands_queue = f"{prefix}.commands"
        self.retry_exchange = f"{prefix}.retry"
        self.events_exchange = f"{prefix}.events"
        self.dead_letter_exchange = f"{prefix}.dead-letter"
        self.dead_letter_queue = f"{prefix}.dead-letter"

    @classmethod
    def from_settings(cls, settings: Settings) -> Topology:
        return cls(
            settings.prefix,
            settings.retry_delays_s,
            settings.delivery_limit,
            settings.partitions,
            quorum_group_size=settings.quorum_group_size,
        )

    # -- names ------------------------------------------------------------------------

    @staticmethod
    def tier_label(delay_s: float) -> str:
        return tier_label(delay_s)

    def _delay_of(self, tier: int | float) -> float:
        """An ``int`` is a tier index; a ``float`` is a delay in seconds."""
        if isinstance(tier, int) and not isinstance(tier, bool):
            return self.retry_delays_s[tier]
        return float(tier)

    def retry_routing_key(self, tier: int | float) -> str:
        return tier_label(self._delay_of(tier))

    def retry_queue(self, tier: int | float) -> str:
        return f"{self.retry_exchange}.{self.retry_routing_key(tier)}"

    def partition_queue(self, partition: int) -> str:
        return f"{self.commands_queue}.p{partition:02d}"

    @property
    def partition_queues(self) -> list[str]:
        return [self.partition_queue(i) for i in range(self.partitions)]

    @property
    def retry_queues(self) -> list[str]:
        return [self.retry_queue(i) for i in range(len(self.retry_delays_s))]

    # -- specs ------------------------------------------------------------------------

    def exchanges(self) -> list[ExchangeSpec]:
        return [
            ExchangeSpec(self.commands_exchange, "topic"),
            ExchangeSpec(self.retry_exchange, "direct"),
            ExchangeSpec(self.events_exchange, "topic"),
            ExchangeSpec(self.dead_letter_exchange, "topic"),
            *([ExchangeSpec(self.partitions_exchange, "direct")] if self.partitions else []),
        ]

    def _commands_arguments(self) -> dict[str, Any]:
        return {
            "x-queue-type": QUORUM,
            "x-delivery-limit": self.delivery_limit,
            "x-dead-letter-exchange": self.dead_letter_exchange,
            "x-dead-letter-strategy": AT_LEAST_ONCE,
            "x-overflow": REJECT_PUBLISH,
        }

    def _partition_specs(self) -> list[QueueSpec]:
        # Single active consumer: even a momentary double owner cannot run two consumers.
        arguments = {**self._commands_arguments(), "x-single-active-consumer": True}
        return [
            QueueSpec(self.partition_queue(i), arguments, ((self.partitions_exchange, str(i)),))
            for i in range(self.partitions)
        ]

    def queues(self) -> list[QueueSpec]:
        commands = QueueSpec(
            self.commands_queue, self._commands_arguments(), ((self.commands_exchange, "#"),)
        )
        dead_letter = QueueSpec(
            self.dead_letter_queue,
            {"x-queue-type": QUORUM},
            ((self.dead_letter_exchange, "#"),),
        )
        queues = (commands, *self._partition_specs(), *self._retry_specs(), dead_letter)
        return [self._replicated(q) for q in queues]

    def _replicated(self, spec: QueueSpec) -> QueueSpec:
        if not self.quorum_group_size:
            return spec
        arguments = {**spec.arguments, GROUP_SIZE_ARG: self.quorum_group_size}
        return QueueSpec(spec.name, arguments, spec.bindings)

    def _retry_specs(self) -> list[QueueSpec]:
        specs: dict[str, QueueSpec] = {}  # equal delays share one tier
        for delay_s in self.retry_delays_s:
            label = tier_label(delay_s)
            specs[label] = QueueSpec(
                f"{self.retry_exchange}.{label}",
                {
                    "x-queue-type": QUORUM,
                    "x-message-ttl": round(delay_s * 1000),
                    "x-dead-letter-exchange": self.commands_exchange,
                    "x-dead-letter-strategy": AT_LEAST_ONCE,
                    "x-overflow": REJECT_PUBLISH,
                },
                ((self.retry_exchange, label),),
            )
        return list(specs.values())

    # -- declaring and checking -------------------------------------------------------

    def declare(self, channel: Any) -> list[str]:
        """Declare everything (a no-op when it exists as specified); returns what it did.

        The queues are declared on a channel of their own: a queue created with another
        quorum group size is refused first (which closes the channel) and declared again
        with its own (``worker.broker.group_size``), while ``channel`` stays usable."""
        done: list[str] = []
        for exchange in self.exchanges():
            _declare_exchange(channel, spec=exchange)
            done.append(f"exchange {exchange.name} ({exchange.kind})")
        queue_channel = channel.connection.channel()
        try:
            for queue in self.queues():
                queue_channel, arguments = declare_queue(queue_channel, queue.name, queue.arguments)
                done.append(f"queue {queue.name} {_describe(arguments)}")
                for exchange_name, key in queue.bindings:
                    channel.queue_bind(queue.name, exchange_name, routing_key=key)
                    done.append(f"binding {exchange_name} --{key}--> {queue.name}")
        finally:
            if queue_channel.is_open:
                queue_channel.close()
        return done

    def check(self, channel: Any) -> list[str]:
        """What is missing or differs from the specification (empty when all is in place).

        A failed declare closes its channel, so every probe runs on a fresh channel of the
        given channel's connection. A queue's arguments are compared by re-declaring it
        with the expected ones, which the broker refuses (406) when they differ and
        otherwise leaves untouched; its quorum group size may differ (it only applied at
        creation: ``under_replicated`` reports missing members). Bindings cannot be
        inspected over AMQP.
        """
        connection = channel.connection
        problems: list[str] = []
        for exchange in self.exchanges():
            problems += _probe(
                connection,
                f"exchange {exchange.name}",
                partial(_exchange_exists, name=exchange.name),
                partial(_declare_exchange, spec=exchange),
                f"is not a durable {exchange.kind} exchange",
            )
        for queue in self.queues():
            problems += _probe(
                connection,
                f"queue {queue.name}",
                partial(_queue_exists, name=queue.name),
                partial(_matches_queue, spec=queue),
                "differs from the expected durable queue",
            )
        return problems


def _exchange_exists(channel: Any, *, name: str) -> None:
    channel.exchange_declare(name, passive=True)


def _declare_exchange(channel: Any, *, spec: ExchangeSpec) -> None:
    channel.exchange_declare(spec.name, spec.kind, durable=True)


def _queue_exists(channel: Any, *, name: str) -> None:
    channel.queue_declare(name, passive=True)


def _matches_queue(channel: Any, *, spec: QueueSpec) -> None:
    used, _ = declare_queue(channel, spec.name, spec.arguments)
    if used is not channel:
        used.close()


def _describe(arguments: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}={v}" for k, v in sorted(arguments.items())) + "}"


def _probe(
    connection: Any,
    what: str,
    exists: Callable[[Any], Any],
    matches: Callable[[Any], Any],
    difference: str,
) -> list[str]:
    for attempt, problem in ((exists, "is missing"), (matches, difference)):
        channel = connection.channel()
        try:
            attempt(channel)
        except ChannelClosedByBroker as exc:
            if exc.reply_code in (NOT_FOUND, PRECONDITION_FAILED):
                return [f"{what} {problem}: {exc.reply_text}"]
            raise
        if channel.is_open:
            channel.close()
    return []
