"""Metrics of per-customer order (docs/ordering.md), on the worker's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from worker.observability.metrics import PREFIX


class OrderMetrics:
    """Partitions owned, hand-overs, sequenced commands, commands held behind an earlier one."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._declare_partition_metrics(registry)
        self._declare_hold_metrics(registry)
        self._declare_predecessor_metrics(registry)

    def _declare_predecessor_metrics(self, r: CollectorRegistry) -> None:
        """Returned deliveries waiting for their predecessor (docs/ordering.md)."""
        p = PREFIX
        self._awaiting = Gauge(
            f"{p}_commands_awaiting_predecessor",
            "Returned commands waiting, unacked, for the command before them of their customer.",
            registry=r,
        )
        self._gave_up = Counter(
            f"{p}_predecessor_waits_given_up",
            "Returned commands that stopped waiting for their predecessor after "
            "PROVISIONER_PREDECESSOR_WAIT and ran (possibly out of order).",
            registry=r,
        )

    def _declare_partition_metrics(self, r: CollectorRegistry) -> None:
        """Who consumes which partition, the sequencer, the partition count and its changes."""
        p = PREFIX
        self._owned = Gauge(
            f"{p}_partitions_owned", "Partitions this process consumes.", registry=r
        )
        self._sequencer = Gauge(
            f"{p}_sequencer_active", "1 while this process holds the sequencer lease.", registry=r
        )
        self._handed_over = Counter(
            f"{p}_partition_handovers",
            "Partitions drained and released to another process.",
            registry=r,
        )
        self._sequenced = Counter(
            f"{p}_commands_sequenced", "Commands moved from the intake to a partition.", registry=r
        )
        self._partitions = Gauge(
            f"{p}_partitions",
            "The deployment's partition count as the store records it (all processes use it).",
            registry=r,
        )
        self._switching = Gauge(
            f"{p}_partitions_switching",
            "1 while the partition count is being changed (routing paused).",
            registry=r,
        )

    def _declare_hold_metrics(self, r: CollectorRegistry) -> None:
        """Commands held behind an earlier one of their customer, and the holds' fate."""
        p = PREFIX
        self._held = Counter(
            f"{p}_commands_held",
            "Commands parked behind an earlier command of their customer (a delayed retry).",
            registry=r,
        )
        self._holds = Counter(
            f"{p}_customer_holds",
            "Customers held behind a command sent to a delay tier.",
            registry=r,
        )
        self._overdue = Gauge(
            f"{p}_order_holds_overdue",
            "Holds of this process's partitions older than the longest delay tier plus the "
            "margin: their holder may never come back (provisioner order holds).",
            registry=r,
        )
        self._released = Counter(
            f"{p}_order_holds_released",
            "Holds released without their holder: by an operator, or the holder had finished.",
            ["by"],
            registry=r,
        )
        for by in ("operator", "finished_holder"):
            self._released.labels(by=by)
        self._returned = Counter(
            f"{p}_order_released_holders_returned",
            "Released holders that came back after all and ran after the commands they held.",
            registry=r,
        )

    def partitions_owned(self, count: int, sequencer: bool) -> None:
        self._owned.set(count)
        self._sequencer.set(1 if sequencer else 0)

    def partitions_handed_over(self, count: int) -> None:
        self._handed_over.inc(count)

    def sequenced(self) -> None:
        self._sequenced.inc()

    def awaiting_predecessor(self, count: int) -> None:
        self._awaiting.set(count)

    def predecessor_wait_given_up(self) -> None:
        self._gave_up.inc()

    def command_held(self) -> None:
        self._held.inc()

    def customer_held(self) -> None:
        self._holds.inc()

    def holds_overdue(self, count: int) -> None:
        self._overdue.set(count)

    def hold_released(self, by: str) -> None:
        self._released.labels(by=by).inc()

    def released_holder_returned(self) -> None:
        self._returned.inc()

    def partitioning(self, partitions: int, switching: bool) -> None:
        self._partitions.set(partitions)
        self._switching.set(1 if switching else 0)
