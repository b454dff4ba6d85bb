"""The batched writes' prepared forms (``worker.store.pg_statements.Batched``)."""

from __future__ import annotations

import re

import pytest

from worker.store import schema
from worker.store.pg_statements import BATCHED, Batched


def test_named_values_become_numbered_in_order_of_first_use() -> None:
    # Given a statement naming one value twice
    statement = Batched("provisioner_x", "UPDATE t SET a = %(a)s, b = %(b)s WHERE a <> %(a)s")
    # When it is prepared and executed by name
    # Then each name has one number, in order of first use, and EXECUTE passes them in it
    assert statement.params == ("a", "b")
    assert (
        statement.prepare_text
        == "PREPARE provisioner_x AS UPDATE t SET a = $1, b = $2 WHERE a <> $1"
    )
    assert statement.execute_text == "EXECUTE provisioner_x(%(a)s, %(b)s)"


@pytest.mark.parametrize("statement", BATCHED, ids=lambda s: s.name)
def test_every_batched_write_prepares_under_its_own_name_with_no_named_value_left(
    statement: Batched,
) -> None:
    # Given a batched write / When its prepared form is made
    text = statement.prepare_text
    # Then no psycopg placeholder is left in it, and it numbers as many values as it names
    assert "%(" not in text
    numbers = {int(n) for n in re.findall(r"\$(\d+)", text)}
    assert numbers == set(range(1, len(statement.params) + 1))
    assert statement.name.startswith("provisioner_")


def test_batched_names_are_unique() -> None:
    assert len({s.name for s in BATCHED}) == len(BATCHED)


def test_the_claims_values_are_what_claim_params_gives() -> None:
    # Given the values a claim is made with / Then they cover what its statements name
    params = schema.claim_params("k", "fp", "w", 60.0, 20.0, 0.0, "ada", None)
    for statement in BATCHED:
        if statement.name.startswith("provisioner_claim"):
            assert set(statement.params) <= set(params), statement.name
