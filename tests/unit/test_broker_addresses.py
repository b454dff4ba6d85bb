"""Several broker URLs: parsing, validation without echoing secrets, and the order of nodes."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.broker.addresses import BrokerAddresses, check_urls, passwords, redact_urls
from worker.config import ConfigError, load_settings

NODES = [
    "amqp://app:s3cret-a@node-a:5672/%2F",
    "amqps://app:s3cret-b@node-b:5671/%2F",
    "amqp://app:s3cret-c@node-c:5672/%2F",
]


def test_a_comma_separated_list_is_the_nodes_of_one_cluster() -> None:
    # Given three URLs with blanks around the commas
    text = " , ".join(NODES) + ","
    # When the list is read
    urls = check_urls(text)
    # Then it has the three URLs, their passwords can be registered, and shown masked
    assert urls == NODES
    assert passwords(text) == ["s3cret-a", "s3cret-b", "s3cret-c"]
    assert "s3cret" not in redact_urls(text)
    assert redact_urls(text).count("app:***@") == 3


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("http://app:s3cret-x@node-x/", "URL 2 of 3 must be an amqp:// or amqps:// URL"),
        ("amqp://app:s3cret-x@node-x:port/", "URL 2 of 3 cannot be parsed"),
        ("amqp://app:s3cret-x@:5672/", "URL 2 of 3 names no host"),
    ],
)
def test_a_bad_url_in_the_list_is_named_by_position_never_by_its_text(bad: str, says: str) -> None:
    # Given a list whose second URL is wrong
    environ = {"PROVISIONER_AMQP_URL": ",".join([NODES[0], bad, NODES[2]])}
    # When the settings are read
    with pytest.raises(ConfigError) as refused:
        load_settings(environ)
    # Then start-up stops naming the variable and the URL's position, showing no password
    assert refused.value.variable == "PROVISIONER_AMQP_URL"
    assert says in str(refused.value)
    assert "s3cret" not in str(refused.value)


def test_the_list_can_come_from_a_file(tmp_path: Path) -> None:
    # Given the list in a mounted Secret file, one URL per line after the commas
    path = tmp_path / "amqp_url"
    path.write_text(",\n".join(NODES) + "\n")
    # When the settings are read / Then all three nodes are known
    settings = load_settings({"PROVISIONER_AMQP_URL_FILE": str(path)})
    assert check_urls(settings.amqp_url) == NODES
    assert "s3cret" not in repr(settings)


def test_rotation_starts_at_the_node_due_and_moves_past_the_one_in_use() -> None:
    # Given three nodes, the second one due first
    addresses = BrokerAddresses(NODES, start=1)
    # When every node is listed, and then node c is connected to
    first = list(addresses.rotation())
    addresses.connected(NODES[2])
    # Then each appears once from b; after c, a reconnection starts at a
    assert first == [NODES[1], NODES[2], NODES[0]]
    assert next(addresses.rotation()) == NODES[0]
    assert addresses.in_use == NODES[2]


def test_processes_start_at_random_nodes_so_their_connections_spread() -> None:
    # Given many processes each parsing the same list
    starts = {next(BrokerAddresses.parse(",".join(NODES)).rotation()) for _ in range(300)}
    # Then every node is some process's first choice
    assert starts == set(NODES)
