"""Where `topology --check` asks about replication, and what it says when it cannot ask."""

from __future__ import annotations

import pytest

from sandbox.rigs import free_port
from worker.broker.replication import ManagementApi, ReplicationUnknownError, under_replicated

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
