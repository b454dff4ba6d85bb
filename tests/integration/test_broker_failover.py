"""Several broker URLs against the real broker: a refusing node is skipped, by the worker's
connection and by the CLI alike, and no message shows a password."""

from __future__ import annotations

import pytest

from sandbox.rigs import free_port
from worker.broker.addresses import BrokerAddresses
from worker.broker.connection import BrokerUnreachable, connect
from worker.cli import main

pytestmark = pytest.mark.integration

SECRET = "N0de-s3cret"


def refusing_node() -> str:
    """A loopback port nobody listens on: the connection is refused at once."""
    return f"amqp://guest:{SECRET}@127.0.0.1:{free_port()}/%2F"


def test_a_refused_node_is_skipped_and_a_reconnection_starts_after_the_node_used(
    amqp_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a down node listed first, then the live one
    down = refusing_node()
    addresses = BrokerAddresses([down, amqp_url], start=0)
    # When the worker connects, loses the connection, and connects again
    first = connect(addresses, connection_name="failover-test")
    first.close()
    in_use_first = addresses.in_use
    second = connect(addresses, connection_name="failover-test")
    second.close()
    # Then both times it ended on the live node, having tried the down one on the way back
    assert in_use_first == amqp_url
    assert addresses.in_use == amqp_url
    # And the node it skipped was logged, its password masked
    skipped = [str(r.__dict__.get("fields")) for r in caplog.records if "next" in r.message]
    assert skipped and all("guest:***@127.0.0.1" in fields for fields in skipped)
    assert SECRET not in caplog.text + "".join(skipped)


def test_every_node_refusing_is_one_error_naming_them_without_passwords() -> None:
    # Given two nodes that both refuse
    urls = f"{refusing_node()},{refusing_node()}"
    # When the worker tries them / Then the error names both, passwords masked
    with pytest.raises(BrokerUnreachable) as caught:
        connect(urls, attempts=1)
    assert str(caught.value).count("guest:***@127.0.0.1") == 2
    assert SECRET not in str(caught.value)


def test_the_cli_fails_over_too(
    amqp_url: str, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the CLI configured with a down node and the live one
    urls = f"{refusing_node()},{amqp_url}"
    # When it declares the topology, whichever node it starts at
    code = main(["topology", "--amqp-url", urls, "--prefix", prefix])
    # Then it succeeded through the live node and printed no password
    assert code == 0
    out = capsys.readouterr()
    assert f"exchange {prefix}.commands" in out.out
    assert SECRET not in out.out + out.err
