"""Routing of the sequencer: a command's ordering key (its customer, or what a rename made
it an alias of) and its partition (docs/ordering.md, points 2 and 7)."""

from __future__ import annotations

import time
import zlib
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple, TypeGuard

import msgspec

from contracts.rules import IDEMPOTENCY_KEY_MAX_LENGTH, USERNAME_MAX_LENGTH, has_control
from worker.store.order_upkeep import OrderUpkeep

# How often an alias in use is marked used in the store (``used_at``): the retention purge
# deletes only aliases no command was routed through for far longer (docs/ordering.md).
ALIAS_TOUCH_EVERY_S = 3600.0
# Ordering keys whose last routed command the sequencer remembers (predecessor chains in
# docs/ordering.md): least recently routed first out; about 300 bytes each at worst.
CHAIN_KEYS = 100_000


class Routed(msgspec.Struct):
    """The fields of any command that name its customer (the rest is ignored here)."""

    type: str | None = None
    customer: str | None = None
    username: str | None = None  # CreateCustomer, and ListCustomers' filter
    new_username: str | None = None  # ChangeUsername
    idempotency_key: str | None = None


_DECODER = msgspec.json.Decoder(Routed)


def customer_of(body: bytes) -> Routed | None:
    try:
        routed = _DECODER.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return routed


def key_of(body: bytes) -> str | None:
    """The idempotency key of a command's body, read leniently (None if absent)."""
    routed = customer_of(body)
    return None if routed is None else routed.idempotency_key


def usable_name(name: str | None) -> TypeGuard[str]:
    """A customer or username fit to be an ordering key, in a header and in the store: what
    the contract allows (``contracts.rules``); anything else routes like a command without
    a customer, and the worker rejects it."""
    return isinstance(name, str) and 0 < len(name) <= USERNAME_MAX_LENGTH and not has_control(name)


def partition_of(key: str | bytes, partitions: int) -> int:
    data = key.encode("utf-8", "surrogatepass") if isinstance(key, str) else key
    return zlib.crc32(data) % partitions


class Route(NamedTuple):
    order_key: str | None
    partition: int
    after: str | None = None  # the predecessor's idempotency key (``x-provisioner-after``)


class Chains:
    """Per ordering key, the idempotency key of the last command routed (and the
    predecessor that one was given): an LRU of ``limit`` keys, in memory only."""

    def __init__(self, limit: int = CHAIN_KEYS) -> None:
        self._limit = limit
        self._last: OrderedDict[str, tuple[str, str | None]] = OrderedDict()

    def after(self, order_key: str, idempotency_key: str) -> str | None:
        """The predecessor of ``idempotency_key``; it becomes the last of ``order_key``. A
        copy of the last command (same key) gets the predecessor its first copy got."""
        last = self._last.get(order_key)
        if last is not None and last[0] == idempotency_key:
            self._last.move_to_end(order_key)
            return last[1]
        after = None if last is None else last[0]
        self._last[order_key] = (idempotency_key, after)
        self._last.move_to_end(order_key)
        if len(self._last) > self._limit:
            self._last.popitem(last=False)
        return after

    def __len__(self) -> int:
        return len(self._last)


def chainable(key: str | None) -> TypeGuard[str]:
    return isinstance(key, str) and 0 < len(key) <= IDEMPOTENCY_KEY_MAX_LENGTH


class Router:
    """Ordering keys and partitions; the alias map of renames."""

    def __init__(
        self,
        store: OrderUpkeep,
        partitions: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store, self.partitions, self._clock = store, partitions, clock
        self._aliases: dict[str, str] = {}
        self._touched: dict[str, float] = {}  # alias -> when last marked used (our clock)
        self.chains = Chains()

    def load(self) -> None:
        """Taking up the intake: what another sequencer routed meanwhile is unknown here,
        so the chains start empty (docs/ordering.md, predecessor chains)."""
        self._aliases = self._store.aliases()
        self._touched = {}
        self.chains = Chains()

    def order_key(self, customer: str) -> str:
        key = self._aliases.get(customer)
        if key is None:
            return customer
        now = self._clock()
        touched = self._touched.get(customer)
        if touched is None or now - touched >= ALIAS_TOUCH_EVERY_S:
            self._store.touch_alias(customer, key)  # kept from the purge while in use
            self._touched[customer] = now
        return key

    def route(self, body: bytes, message_id: str | None) -> tuple[str | None, int]:
        """(ordering key or None, partition). Records a rename's alias before returning."""
        order_key, partition, _ = self.route_chained(body, message_id, delayed=True)
        return order_key, partition

    def route_chained(self, body: bytes, message_id: str | None, delayed: bool) -> Route:
        """``route``, and the predecessor of the command in its ordering key's chain; a
        delay-tier copy (``delayed``) is neither given one nor entered (its hold keeps its
        place)."""
        routed = customer_of(body)
        order_key, partition = self._route(routed, body, message_id)
        if order_key is None or delayed or routed is None:
            return Route(order_key, partition)
        key = routed.idempotency_key
        after = self.chains.after(order_key, key) if chainable(key) else None
        return Route(order_key, partition, after)

    def _route(
        self, routed: Routed | None, body: bytes, message_id: str | None
    ) -> tuple[str | None, int]:
        customer = None
        if routed is not None:
            customer = (
                routed.username
                if routed.type in ("CreateCustomer", "ListCustomers")
                else routed.customer
            )
        if routed is None or not usable_name(customer):
            return None, partition_of(message_id or body, self.partitions)
        key = self.order_key(customer)
        if routed.type == "ChangeUsername" and usable_name(routed.new_username):
            new = routed.new_username
            if self._aliases.get(new) != key:
                self._store.add_alias(new, key)  # before the republish: durable first
                self._aliases[new] = key
                self._touched[new] = self._clock()
        return key, partition_of(key, self.partitions)
