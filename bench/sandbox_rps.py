"""Requests per second of the sandbox over keep-alive connections.

Runs ``provisioner-sandbox`` as a separate process (so client and server do not share a
GIL), then several client threads, each with one raw ``http.client`` keep-alive connection,
send ``reseller.manage`` profile/get (limit 1) and ``enable`` calls for a fixed duration.

    python -m bench.sandbox_rps [--threads 4] [--duration-s 5] [--customers 100]
"""

from __future__ import annotations

import argparse
import http.client
import sys
import threading
import time
from urllib.parse import urlencode, urlsplit

from sandbox.rigs import SandboxProcess

CLIENT_THREADS = 4
DURATION_S = 5.0
CUSTOMERS = 100
REQUEST_TIMEOUT_S = 10.0
TARGET_RPS = 1500
AUTH = {"api_user": "sandbox", "api_key": "sandbox-key"}


def customer_form(username: str) -> dict[str, str]:
    fields = ("first_name", "last_name", "address", "city", "state", "zip", "country", "phone")
    form = {name: "x" for name in fields}
    form.update(username=username, email=username, password="bench-pw", confirm_password="bench-pw")
    form.update(website="example.com", company="bench", package="p", whitelabel="sendgrid.me")
    return form


def post(conn: http.client.HTTPConnection, path: str, form: dict[str, str]) -> int:
    body = urlencode({**AUTH, **form})
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    conn.request("POST", path, body=body, headers=headers)
    response = conn.getresponse()
    response.read()
    return response.status


def client_loop(
    host: str, port: int, base: str, deadline: float, counts: list[int], customers: int
) -> None:
    conn = http.client.HTTPConnection(host, port, timeout=REQUEST_TIMEOUT_S)
    done = 0
    while time.monotonic() < deadline:
        if done % 2:
            form = {"method": "enable", "user": f"bench{done % customers}@example.com"}
        else:
            form = {"method": "profile", "task": "get", "limit": "1"}
        status = post(conn, f"{base}reseller.manage.json", form)
        if status != 200:
            raise RuntimeError(f"unexpected status {status}")
        done += 1
    conn.close()
    counts.append(done)


def measure(threads: int, duration_s: float, customers: int) -> float:
    sandbox = SandboxProcess()
    try:
        parts = urlsplit(sandbox.url)
        host, port, base = parts.hostname or "127.0.0.1", parts.port or 80, parts.path
        setup = http.client.HTTPConnection(host, port, timeout=REQUEST_TIMEOUT_S)
        for n in range(customers):
            post(setup, f"{base}reseller.add.json", customer_form(f"bench{n}@example.com"))
        setup.close()
        counts: list[int] = []
        deadline = time.monotonic() + duration_s
        started = time.monotonic()
        workers = [
            threading.Thread(
                target=client_loop, args=(host, port, base, deadline, counts, customers)
            )
            for _ in range(threads)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        elapsed = time.monotonic() - started
        if len(counts) != threads:
            raise RuntimeError("a client thread failed")
        return sum(counts) / elapsed
    finally:
        sandbox.stop()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=CLIENT_THREADS)
    parser.add_argument("--duration-s", type=float, default=DURATION_S)
    parser.add_argument("--customers", type=int, default=CUSTOMERS)
    args = parser.parse_args()
    rps = measure(args.threads, args.duration_s, args.customers)
    verdict = "ok" if rps >= TARGET_RPS else f"BELOW the {TARGET_RPS} requests/s target"
    print(f"sandbox: {rps:.0f} requests/s over {args.threads} keep-alive connections ({verdict})")
    return 0 if rps >= TARGET_RPS else 1


if __name__ == "__main__":
    sys.exit(main())
