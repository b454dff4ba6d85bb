"""Routing of the sequencer: a command's ordering key (its customer, or what a rename made
it an alias of) and its partition (docs/ordering.md, points 2 and 7)."""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from typing import TypeGuard

import msgspec

from contracts.rules import USERNAME_MAX_LENGTH, has_control
from worker.store.order_upkeep import OrderUpkeep

# How often an alias in use is marked used in the store (``used_at``): the retention purge
# deletes only aliases no command was routed through for far longer (docs/ordering.md).
ALIAS_TOUCH_EVERY_S = 3600.0


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


def usable_name(name: str | None) -> TypeGuard[str]:
    """A customer or username fit to be an ordering key, in a header and in the store: what
    the contract allows (``contracts.rules``); anything else routes like a command without
    a customer, and the worker rejects it."""
    return isinstance(name, str) and 0 < len(name) <= USERNAME_MAX_LENGTH and not has_control(name)


def partition_of(key: str | bytes, partitions: int) -> int:
    data = key.encode("utf-8", "surrogatepass") if isinstance(key, str) else key
    return zlib.crc32(data) % partitions


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

    def load(self) -> None:
        self._aliases = self._store.aliases()
        self._touched = {}

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
        routed = customer_of(body)
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
