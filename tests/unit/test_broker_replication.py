"""Where `topology --check` asks about replication, and what it says when it cannot ask."""

from __future__ import annotations

import pytest

from sandbox.rigs import free_port
from worker.broker.replication import ManagementApi, ReplicationUnknownError, under_replicated
from worker.broker.topology import Topology
from worker.config import load_settings

NODES = "amqp://ops:s3cret-pw@rabbit-0:5672/prod,amqp://ops:s3cret-pw@rabbit-1:5672/prod"


def test_by_default_the_first_node_is_asked_on_the_management_port_as_the_broker_user() -> None:
    # Given the broker's nodes and no management URL
    api = ManagementApi.from_urls(NODES)
    # Then the API of the first node is asked, with the broker's credentials and vhost
    assert (api.base_url, api.user, api.password, api.vhost) == (
        "http://rabbit-0:15672",
        "ops",
        "s3cret-pw",
        "prod",
    )


def test_a_management_url_wins_and_may_bring_its_own_credentials() -> None:
    api = ManagementApi.from_urls(NODES, "https://admin:other-pw@mgmt.example:443")
    assert (api.base_url, api.user, api.password) == (
        "https://mgmt.example:443",
        "admin",
        "other-pw",
    )
    assert ManagementApi.from_urls("amqp://h/%2F").vhost == "/"


def test_an_unreachable_api_is_reported_without_the_password() -> None:
    # Given a management URL where nothing listens
    api = ManagementApi.from_urls(NODES, f"http://127.0.0.1:{free_port()}")
    # When the replication is asked / Then the error names the API, not the password
    with pytest.raises(ReplicationUnknownError) as caught:
        under_replicated(api, ["q"])
    assert "127.0.0.1" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_every_quorum_queue_asks_for_three_members_unless_set_otherwise() -> None:
    # Given the topology with the default settings, with five members asked for and with
    # the broker's default (0)
    default = Topology.from_settings(load_settings({}))
    five = Topology.from_settings(load_settings({"PROVISIONER_QUORUM_GROUP_SIZE": "5"}))
    broker = Topology.from_settings(load_settings({"PROVISIONER_QUORUM_GROUP_SIZE": "0"}))
    # When their queues are specified
    # Then every queue carries the size, and none does with 0
    assert {q.arguments["x-quorum-initial-group-size"] for q in default.queues()} == {3}
    assert {q.arguments["x-quorum-initial-group-size"] for q in five.queues()} == {5}
    assert all("x-quorum-initial-group-size" not in q.arguments for q in broker.queues())
