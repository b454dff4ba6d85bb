"""The raw limit: one thread, one pika channel, one ``requests.Session``, nothing else.

Consumes the same CreateCustomer bodies the worker gets, POSTs each to the sandbox's
``reseller.add`` form endpoint, publishes a minimal event and acks: no validation, no
idempotency store, no publisher confirms, no thread pool. What the worker adds on top of
this loop is what its guarantees cost.

``python -m bench.raw_loop <amqp_url> <prefix> <api_url> <api_user> <api_key>`` runs until
SIGTERM, like the worker.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pika
import requests

from bench.rig import DELIVERY_LIMIT, RETRY_DELAYS_S
from worker.broker.topology import Topology

PREFETCH = 64
HTTP_TIMEOUT_S = 30.0


def run_raw_loop(amqp_url: str, prefix: str, api_url: str, api_user: str, api_key: str) -> None:
    topology = Topology(prefix, RETRY_DELAYS_S, DELIVERY_LIMIT)
    endpoint = api_url.rstrip("/") + "/reseller.add.json"
    session = requests.Session()
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=PREFETCH)

    def on_message(ch: Any, method: Any, _props: Any, body: bytes) -> None:
        command = json.loads(body)
        form = {k: v for k, v in command.items() if k not in ("type", "idempotency_key")}
        form.update(api_user=api_user, api_key=api_key, confirm_password=form["password"])
        response = session.post(endpoint, data=form, timeout=HTTP_TIMEOUT_S)
        outcome = "succeeded" if response.json().get("message") == "success" else "failed"
        event = {"type": "CustomerCreated", "idempotency_key": command["idempotency_key"]}
        ch.basic_publish(
            topology.events_exchange, f"CreateCustomer.{outcome}", json.dumps(event).encode()
        )
        ch.basic_ack(method.delivery_tag)

    channel.basic_consume(topology.commands_queue, on_message)
    channel.start_consuming()
    connection.close()


if __name__ == "__main__":
    run_raw_loop(*sys.argv[1:6])
