"""Grouping dead letters by cause: what is masked, and ids that do not drift."""

from __future__ import annotations

import pytest

from worker.ops.dlq_cause import group_id, mask_error


@pytest.mark.parametrize(
    ("error", "masked"),
    [
        ("customer 'acme-7' not found (HTTP 404)", "customer '<id>' not found (HTTP <n>)"),
        ('username "bob" already exists', 'username "<id>" already exists'),
        ("create_customer: server error (HTTP 503)", "create_customer: server error (HTTP <n>)"),
        ("key 3f2a9c1e-1111-2222-3333-444455556666 busy", "key <id> busy"),
        ("mail to a.b@example.com bounced", "mail to <email> bounced"),
        ("user bob42 waited 3.5s", "user <id> waited <n>s"),
        ("key is being executed by another worker", "key is being executed by another worker"),
    ],
)
def test_identifiers_and_numbers_are_masked_words_kept(error: str, masked: str) -> None:
    # Given an error message; When masked; Then only the identifiers and numbers changed
    assert mask_error(error) == masked


def test_messages_differing_only_in_identifiers_share_a_group() -> None:
    # Given two failures of the same cause about different customers
    first = group_id("ResetPassword", "failed", "customer_not_found", mask_error("no 'a-1' (7)"))
    second = group_id("ResetPassword", "failed", "customer_not_found", mask_error("no 'b-2' (9)"))
    # Then one group, and its id is a pure function of the fields (same in every process)
    assert first == second
    assert first == group_id("ResetPassword", "failed", "customer_not_found", "no '<id>' (<n>)")
    assert first != group_id("AddCredential", "failed", "customer_not_found", "no '<id>' (<n>)")
    assert len(first) == 12 and int(first, 16) >= 0
