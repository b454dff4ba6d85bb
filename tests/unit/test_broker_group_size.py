"""Reading an existing queue's quorum group size from RabbitMQ's refusal of a redeclare."""

from __future__ import annotations

import pytest
from pika.exceptions import ChannelClosedByBroker

from worker.broker.group_size import GROUP_SIZE_ARG, existing_arguments

WANTED = {"x-queue-type": "quorum", "x-delivery-limit": 20, GROUP_SIZE_ARG: 3}
BASE = {"x-queue-type": "quorum", "x-delivery-limit": 20}
PREFIX = "PRECONDITION_FAILED - inequivalent arg "


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # RabbitMQ 3.10.8's words, as the local broker sends them
        (
            PREFIX + f"'{GROUP_SIZE_ARG}' for queue 'q' in vhost '/': received the value '3' "
            "of type 'signedint' but current is none",
            BASE,
        ),
        (
            PREFIX + f"'{GROUP_SIZE_ARG}' for queue 'q' in vhost '/': received '3' but current "
            "is '1'",
            {**BASE, GROUP_SIZE_ARG: 1},
        ),
        (
            PREFIX + f"'{GROUP_SIZE_ARG}' for queue 'q' in vhost '/': received none but current "
            "is the value '5' of type 'signedint'",
            {**BASE, GROUP_SIZE_ARG: 5},
        ),
        # any other difference is not forgiven
        (
            PREFIX + "'x-delivery-limit' for queue 'q' in vhost '/': received the value '20' "
            "of type 'signedint' but current is none",
            None,
        ),
        ("PRECONDITION_FAILED - something else entirely", None),
    ],
)
def test_only_a_refusal_over_the_group_size_gives_the_queues_own(
    text: str, expected: dict[str, object] | None
) -> None:
    # Given the broker's refusal of a redeclare
    refusal = ChannelClosedByBroker(406, text)
    # When the arguments to declare again are worked out
    # Then they are the wanted ones with the queue's own size, or none at all
    assert existing_arguments(WANTED, refusal) == expected


def test_a_refusal_other_than_precondition_failed_is_not_forgiven() -> None:
    # Given a 404 whose text happens to name the argument
    refusal = ChannelClosedByBroker(404, f"NOT_FOUND '{GROUP_SIZE_ARG}' current is none")
    # When / Then nothing is declared again
    assert existing_arguments(WANTED, refusal) is None
