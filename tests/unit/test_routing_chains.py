"""The sequencer's chains (docs/ordering.md, "Returned deliveries out of order"): per
ordering key, the last command routed, bounded."""

from __future__ import annotations

from worker.routing import Chains


def test_each_command_names_the_last_one_of_its_key_and_a_copy_its_first_copys() -> None:
    chains = Chains()
    assert chains.after("ada", "a1") is None
    assert chains.after("bob", "b1") is None
    assert chains.after("ada", "a2") == "a1"
    # A second copy of a2 (a redelivered intake message) waits for what the first did
    assert chains.after("ada", "a2") == "a1"
    assert chains.after("ada", "a3") == "a2"
    assert chains.after("bob", "b2") == "b1"


def test_the_least_recently_routed_key_is_forgotten_past_the_limit() -> None:
    chains = Chains(limit=2)
    chains.after("ada", "a1")
    chains.after("bob", "b1")
    chains.after("ada", "a2")  # ada is now the most recent
    chains.after("cy", "c1")  # bob goes
    assert len(chains) == 2
    assert chains.after("bob", "b2") is None
    assert chains.after("cy", "c2") == "c1"
