"""A turn's acks leave as one multiple-ack for the run that starts at the lowest unsettled
delivery, and one by one otherwise: never acking a delivery the worker still owns."""

from __future__ import annotations

import pytest

from worker.broker.acks import AckBatch

CASES = [
    # (delivered, nacked, acked this turn, frames sent)
    ("in order", [1, 2, 3, 4], [], [1, 2, 3, 4], [(4, True)]),
    ("acked out of order", [1, 2, 3], [], [3, 1, 2], [(3, True)]),
    ("the lowest still running", [1, 2, 3, 4], [], [2, 3, 4], [(2, False), (3, False), (4, False)]),
    ("a gap still running", [1, 2, 3, 4, 5], [], [1, 2, 4, 5], [(2, True), (4, False), (5, False)]),
    ("one alone", [7], [], [7], [(7, False)]),
    ("a nacked tag is settled", [1, 2, 3, 4], [2], [1, 3, 4], [(4, True)]),
    ("a nacked lowest moves the start", [1, 2, 3], [1], [2, 3], [(3, True)]),
    ("a tag never seen", [5, 6], [], [4, 5, 6], [(6, True)]),
    ("below one still running", [1, 2, 3], [], [1, 3], [(1, False), (3, False)]),
    ("nothing to send", [1, 2], [], [], []),
]


@pytest.mark.parametrize(
    ("delivered", "nacked", "acked", "frames"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_a_turns_acks_leave_as_few_frames_as_is_safe(
    delivered: list[int], nacked: list[int], acked: list[int], frames: list[tuple[int, bool]]
) -> None:
    # Given deliveries dispatched on a channel, some nacked already
    sent: list[tuple[int, bool]] = []
    batch = AckBatch(lambda tag, multiple: sent.append((tag, multiple)))
    for tag in delivered:
        batch.delivered(tag)
    for tag in nacked:
        batch.settled(tag)
    # When a turn's acks are flushed
    for tag in acked:
        batch.ack(tag)
    batch.flush()
    # Then exactly these frames go out
    assert sent == frames


def test_the_next_turn_starts_from_what_is_still_unsettled() -> None:
    # Given a first turn that acked 2 and 3 while 1 was still running
    sent: list[tuple[int, bool]] = []
    batch = AckBatch(lambda tag, multiple: sent.append((tag, multiple)))
    for tag in (1, 2, 3, 4, 5):
        batch.delivered(tag)
    batch.ack(2)
    batch.ack(3)
    batch.flush()
    # When 1, 4 and 5 are acked in the next turn
    for tag in (1, 4, 5):
        batch.ack(tag)
    batch.flush()
    # Then one multiple-ack settles 1, 4 and 5 (2 and 3 are settled already): every delivery
    # still unsettled up to 5 is acked in this turn
    assert sent == [(2, False), (3, False), (5, True)]


def test_a_delivery_still_running_is_never_covered() -> None:
    # Given 1..4 dispatched and 3 still running
    sent: list[tuple[int, bool]] = []
    batch = AckBatch(lambda tag, multiple: sent.append((tag, multiple)))
    for tag in (1, 2, 3, 4):
        batch.delivered(tag)
    # When 1, 2 and 4 are acked in one turn
    for tag in (4, 2, 1):
        batch.ack(tag)
    batch.flush()
    # Then the multiple-ack stops below 3, and 4 goes alone
    assert sent == [(2, True), (4, False)]
