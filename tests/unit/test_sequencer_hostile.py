"""The sequencer routes whatever a publisher sent without trusting it: a customer name the
contract would refuse never becomes an ordering key, a header or a stored alias."""

from __future__ import annotations

import json

import pytest

from worker.sequencer import Router, usable_name


class Aliases:
    def __init__(self) -> None:
        self.added: dict[str, str] = {}

    def aliases(self) -> dict[str, str]:
        return dict(self.added)

    def add_alias(self, new: str, key: str) -> None:
        self.added[new] = key


@pytest.mark.parametrize("name", ["", "ali\x00ce", "bob\n", "x" * 65, None])
def test_a_name_the_contract_refuses_is_no_ordering_key(name: str | None) -> None:
    assert not usable_name(name)
    body = json.dumps({"type": "EnableCustomer", "customer": name, "idempotency_key": "k"})
    key, partition = Router(Aliases(), 4).route(body.encode(), "message-1")  # type: ignore[arg-type]
    assert key is None and 0 <= partition < 4


def test_a_rename_to_a_refused_name_records_no_alias() -> None:
    store = Aliases()
    body = {"type": "ChangeUsername", "customer": "ada", "new_username": "a\x00@b.co"}
    key, _ = Router(store, 4).route(json.dumps(body).encode(), "m")  # type: ignore[arg-type]
    assert key == "ada"
    assert store.added == {}


def test_usable_names_route_by_customer() -> None:
    assert usable_name("Zoë-客户")
    body = {"type": "EnableCustomer", "customer": "ada", "idempotency_key": "k"}
    key, _ = Router(Aliases(), 4).route(json.dumps(body).encode(), "m")  # type: ignore[arg-type]
    assert key == "ada"
