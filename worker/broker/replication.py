"""Is every quorum queue replicated on every node of the cluster? Asked of the management API.

AMQP cannot tell a queue's members. A quorum queue gets its members when it is declared,
among the nodes running then: one declared while a node was down stays without a member
there after the node is back (RabbitMQ 3.10 does not grow it by itself), and one node less
is then enough to lose its majority. ``under_replicated`` compares each queue's members (and
those online) with the cluster's nodes, from ``GET /api/nodes`` and ``GET /api/queues/...``
of the management plugin (``rabbitmq-plugins enable rabbitmq_management``). Its address is
``PROVISIONER_MANAGEMENT_URL``, else port 15672 on the first broker node with the broker's
credentials. Messages never show a password.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import urllib3

from worker.broker.addresses import split_urls

MANAGEMENT_PORT = 15672
TIMEOUT_S = 5.0


class ReplicationUnknownError(RuntimeError):
    """The management API could not be asked; the message names it without a password."""


@dataclass(frozen=True)
class ManagementApi:
    base_url: str  # http(s)://host:port, no credentials
    user: str
    password: str
    vhost: str

    @classmethod
    def from_urls(cls, amqp_urls: str, management_url: str = "") -> ManagementApi:
        """From ``PROVISIONER_MANAGEMENT_URL`` if set, else the first broker node's host on
        ``MANAGEMENT_PORT``; credentials from either URL, the vhost from the broker's."""
        broker = urlsplit(split_urls(amqp_urls)[0])
        vhost = unquote(broker.path[1:]) if len(broker.path) > 1 else "/"
        if management_url:
            given = urlsplit(management_url)
            host, port = given.hostname or "localhost", given.port
            scheme = given.scheme
            user, password = given.username or broker.username, given.password or broker.password
        else:
            host, port, scheme = broker.hostname or "localhost", MANAGEMENT_PORT, "http"
            user, password = broker.username, broker.password
        base = f"{scheme}://{host}:{port}" if port else f"{scheme}://{host}"
        return cls(base, unquote(user or "guest"), unquote(password or "guest"), vhost)

    def get(self, path: str) -> Any:
        headers = urllib3.make_headers(basic_auth=f"{self.user}:{self.password}")
        try:
            response = urllib3.request(
                "GET",
                self.base_url + path,
                headers=headers,
                timeout=urllib3.Timeout(TIMEOUT_S),
                retries=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise ReplicationUnknownError(
                f"management API at {self.base_url} unreachable ({type(exc).__name__})"
            ) from None
        if response.status != 200:
            raise ReplicationUnknownError(
                f"management API at {self.base_url} answered {response.status} for {path}"
            )
        return json.loads(response.data)


def under_replicated(api: ManagementApi, queues: Iterable[str]) -> list[str]:
    """One line per quorum queue with fewer members than the cluster has nodes, or with
    members offline; raises ``ReplicationUnknownError`` when the API cannot say."""
    nodes = sorted(node["name"] for node in api.get("/api/nodes"))
    problems = []
    for name in queues:
        info = api.get(f"/api/queues/{quote(api.vhost, safe='')}/{quote(name, safe='')}")
        if info.get("type") != "quorum":
            continue
        members, online = set(info.get("members", [])), set(info.get("online", []))
        missing = [node for node in nodes if node not in members]
        if missing:
            problems.append(
                f"queue {name} is under-replicated: {len(members)} of {len(nodes)} nodes are"
                f" members (not on {', '.join(missing)}; add with: rabbitmq-queues grow"
                f" <node> all)"
            )
        elif members - online:
            problems.append(
                f"queue {name} has {len(members - online)} of {len(members)} members offline"
            )
    return problems
