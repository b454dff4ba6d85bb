"""The PostgreSQL connections of one process: a bounded ``psycopg_pool`` shared by its threads.

A connection per pool thread made each process hold ``concurrency x threads per slot + 1``
backends (65 at c32), two processes ~130 and prod's 20 replicas ~660: past a stock
PostgreSQL's ``max_connections`` (100), and on a small host the backends' context switches
made a second process slower than one. A store round trip is short (one statement, in
autocommit), so a few connections serve many threads: a thread borrows one for a statement
and gives it back.

Every connection is bounded in time, so that a dead server or a lost network costs a
command a bounded wait, never a hung thread: connecting (``connect_timeout``), a statement
(``statement_timeout``), an idle transaction, unacknowledged writes (``tcp_user_timeout``)
and a silent peer (TCP keepalives). A thread waits at most ``wait_s`` for a free connection;
while the server is down the pool reconnects in the background (backoff with jitter) and
the waiting threads get the new connections as they come. Values the URL sets itself win.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

CONNECT_TIMEOUT_S = 5
STATEMENT_TIMEOUT_S = 15.0
IDLE_IN_TRANSACTION_TIMEOUT_S = 30.0
TCP_USER_TIMEOUT_S = 15.0
KEEPALIVES_IDLE_S = 10
KEEPALIVES_INTERVAL_S = 5
KEEPALIVES_COUNT = 3
# A pooled connection is replaced after this long, so a failed-over server's connections
# do not live for ever; and closed when idle this long (the pool keeps its size).
MAX_LIFETIME_S = 3600.0
MAX_IDLE_S = 600.0
# How long the pool keeps trying to replace a broken connection before it gives that slot
# up (a later wait for a connection grows the pool again).
RECONNECT_TIMEOUT_S = 300.0

Connection = psycopg.Connection[Any]


def connection_kwargs(url: str) -> dict[str, Any]:
    """Connection parameters: autocommit, no server-side prepared statements cached on
    the first use, and the timeouts above unless the URL sets them."""
    defaults: dict[str, Any] = {
        "connect_timeout": CONNECT_TIMEOUT_S,
        "keepalives": 1,
        "keepalives_idle": KEEPALIVES_IDLE_S,
        "keepalives_interval": KEEPALIVES_INTERVAL_S,
        "keepalives_count": KEEPALIVES_COUNT,
        "tcp_user_timeout": int(TCP_USER_TIMEOUT_S * 1000),
    }
    try:
        given = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        given = {}  # the connection attempt reports the URL's problem
    kwargs = {name: value for name, value in defaults.items() if name not in given}
    return {**kwargs, "autocommit": True, "prepare_threshold": 0}


def set_session_timeouts(conn: Connection) -> None:
    """Run on every new connection: its server-side time limits (milliseconds)."""
    conn.execute(
        "SELECT set_config('statement_timeout', %s, false),"
        " set_config('idle_in_transaction_session_timeout', %s, false)",
        (str(int(STATEMENT_TIMEOUT_S * 1000)), str(int(IDLE_IN_TRANSACTION_TIMEOUT_S * 1000))),
        prepare=False,
    )


def connect(url: str) -> Connection:
    """One connection outside the pool (schema creation), with the same settings."""
    conn = psycopg.connect(url, **connection_kwargs(url))
    set_session_timeouts(conn)
    return conn


def open_pool(
    url: str, size: int, wait_s: float, prepare: Sequence[str] = ()
) -> ConnectionPool[Connection]:
    """``size`` connections, opened in the background; ``connection()`` waits ``wait_s``.
    Each new one runs the statements of ``prepare`` (``PREPARE ...``) once."""

    def configure(conn: Connection) -> None:
        set_session_timeouts(conn)
        for statement in prepare:
            conn.execute(statement, prepare=False)

    return ConnectionPool(
        url,
        kwargs=connection_kwargs(url),
        min_size=size,
        max_size=size,
        open=True,
        configure=configure,
        name="provisioner-store",
        timeout=wait_s,
        max_lifetime=MAX_LIFETIME_S,
        max_idle=MAX_IDLE_S,
        reconnect_timeout=RECONNECT_TIMEOUT_S,
    )
