"""The shared store for many replicas: PostgreSQL through psycopg 3 and a bounded pool.

The pool threads share a few connections (``worker/store/pg_pool.py``: its size, timeouts
and reconnection). Connections run in autocommit mode because every hot operation is one
statement, which is then its own transaction in a single round trip; the schema DDL runs in
an explicit transaction under an advisory lock. Statements are prepared on first use.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg
from psycopg_pool import PoolTimeout

from worker.store import fingerprint_key, pg_batch, pg_pool, pg_statements, schema
from worker.store.order import order_schema_sql
from worker.store.records import (
    Claim,
    ClaimStatus,
    Clock,
    FingerprintKeys,
    StoredRecord,
    StoreError,
)

T = TypeVar("T")

# Serialises schema creation between processes opening the store at the same moment.
SCHEMA_LOCK_ID = 0x70726F76  # "prov"

_READ_CLAIM = schema.to_pyformat(schema.READ_CLAIM)
_FORGET_WORKER = schema.to_pyformat(schema.FORGET_WORKER)
_PURGE_RECORDS = schema.to_pyformat(schema.PURGE_RECORDS_SKIP_LOCKED)
_PURGE_WORKERS = schema.to_pyformat(schema.PURGE_WORKERS)
_GET = schema.to_pyformat(schema.GET)
_LOCK_CUSTOMER = schema.to_pyformat(schema.LOCK_CUSTOMER)
_PURGE_CUSTOMER_LEASES = schema.to_pyformat(schema.PURGE_CUSTOMER_LEASES)
_RENEW_LEASE = schema.to_pyformat(schema.RENEW_LEASE)
_RENEW_CUSTOMER = schema.to_pyformat(schema.RENEW_CUSTOMER)
_MARK_LEGACY_FINGERPRINTS = schema.to_pyformat(fingerprint_key.MARK_LEGACY_FINGERPRINTS)
_ADD_FINGERPRINT_KEY = schema.to_pyformat(fingerprint_key.ADD_FINGERPRINT_KEY)

Connection = psycopg.Connection[Any]


def describe(url: str) -> str:
    """``host:port/dbname`` of a URL, for messages: never the user's password."""
    parts = urlsplit(url)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.hostname or 'localhost'}{port}{parts.path or '/'}"


def scrub(text: str, url: str) -> str:
    """Remove the URL's password from a driver message, whatever the driver put in it."""
    try:
        parts = urlsplit(url)
        passwords = [parts.password or "", *parse_qs(parts.query).get("password", [])]
    except ValueError:
        passwords = []
    for secret in {p for pw in passwords for p in (pw, unquote(pw))} - {""}:
        text = text.replace(secret, "***")
    return text


class PostgresStore:
    dialect = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        clock: Clock,
        pool_size: int,
        pool_wait_s: float,
    ) -> None:
        self._url = url
        self._clock = clock
        self._pool_wait_s = pool_wait_s
        # A connection of its own, so a bad URL or password fails here with the server's
        # own words rather than as a pool timeout.
        try:
            with self._connect() as conn:
                self._fingerprint_keys = self._create_schema(conn)
        except psycopg.Error as exc:
            raise self._error("cannot create the schema in", exc) from None
        prepare = [statement.prepare_text for statement in pg_statements.BATCHED]
        self._pool = pg_pool.open_pool(url, pool_size, pool_wait_s, prepare)
        writers = min(pool_size, pg_batch.WRITERS)
        self._writer = pg_batch.BatchWriter(self._pool, writers, self._run, self._pool_error)

    # -- connections -------------------------------------------------------------------

    def _error(self, doing: str, exc: BaseException) -> StoreError:
        return StoreError(
            f"{doing} the PostgreSQL store at {describe(self._url)}: {scrub(str(exc), self._url)}"
        )

    def _pool_error(self, exc: BaseException) -> StoreError:
        return self._error(f"no connection within {self._pool_wait_s:g} s to", exc)

    def _connect(self) -> Connection:
        try:
            return pg_pool.connect(self._url)
        except (psycopg.Error, ValueError) as exc:
            raise self._error("cannot open", exc) from None

    def _run(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` on a pooled connection; after a broken one, once more on another.

        The pool drops a connection that comes back broken. After a server restart every
        idle one is broken too: ``check`` drops them all at once, so the second try waits
        for a reconnected one (at most ``pool_wait_s``) instead of failing on the next.
        """
        for attempt in (1, 2):
            try:
                with self._pool.connection() as conn:
                    return work(conn)
            except PoolTimeout as exc:
                raise self._pool_error(exc) from None
            except psycopg.OperationalError as exc:
                if attempt == 2:
                    raise self._error("failed using", exc) from exc
                with contextlib.suppress(psycopg.Error):
                    self._pool.check()
            except psycopg.Error as exc:
                raise self._error("failed using", exc) from exc
        raise AssertionError("unreachable")

    def _create_schema(self, conn: Connection) -> FingerprintKeys:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_ID,), prepare=False)
            statements = schema.create_schema_sql(real="DOUBLE PRECISION", blob="BYTEA")
            for statement in statements + order_schema_sql("DOUBLE PRECISION", "BYTEA"):
                conn.execute(statement, prepare=False)
            for table, column, definition in schema.ADDED_COLUMNS:
                conn.execute(
                    f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {definition}",
                    prepare=False,
                )
            params = fingerprint_key.fingerprint_key_params()
            conn.execute(_MARK_LEGACY_FINGERPRINTS, params, prepare=False)
            conn.execute(_ADD_FINGERPRINT_KEY, params, prepare=False)
            rows = conn.execute(fingerprint_key.READ_META, prepare=False).fetchall()
        return fingerprint_key.fingerprint_keys(rows)

    def fingerprint_keys(self) -> FingerprintKeys:
        return self._fingerprint_keys

    # -- the store ---------------------------------------------------------------------

    def claim(
        self,
        key: str,
        fingerprint: str,
        owner: str,
        lease_ttl_s: float,
        dead_after_s: float,
        customer: str | None = None,
        legacy_fingerprint: str | None = None,
    ) -> Claim:
        params = schema.claim_params(
            key,
            fingerprint,
            owner,
            lease_ttl_s,
            dead_after_s,
            self._clock(),
            customer,
            legacy_fingerprint,
        )
        statement = pg_statements.CLAIM_KEY if customer is None else pg_statements.CLAIM_CUSTOMER
        for _ in range(schema.CLAIM_ROUNDS):
            row = self._writer.write(statement, params, _one_row)
            record, (locked, *claimed) = row[:7], row[7:]
            if not locked:
                return Claim(ClaimStatus.CUSTOMER_BUSY, 0)
            if claimed[0] is not None:
                return schema.acquired(tuple(claimed))
            refusal = schema.refused(None if record[1] is None else record, params)
            if refusal is not None and refusal.status is ClaimStatus.BUSY:
                # The statement's snapshot may predate a commit its claim waited for (the
                # holder finishing): ask again before calling the key busy.
                refusal = schema.refused(self._read_claim(params), params)
            if refusal is not None:
                return refusal
            # The key became claimable in between (its holder finished): claim again.
        return Claim(ClaimStatus.BUSY, 0)

    def _read_claim(self, params: dict[str, Any]) -> tuple[Any, ...] | None:
        return self._run(lambda conn: conn.execute(_READ_CLAIM, params).fetchone())

    def complete(
        self,
        key: str,
        owner: str,
        succeeded: bool,
        event: bytes,
        uncertain: bool = False,
        customer: str | None = None,
    ) -> bool:
        params = schema.complete_params(key, owner, succeeded, event, uncertain, self._clock())
        if customer is None:
            return self._writer.write(pg_statements.COMPLETE, params, _one_changed)
        params["customer"] = customer
        row = self._writer.write(pg_statements.COMPLETE_UNLOCK, params, _one_row)
        return bool(row[0] == 1)

    def release(self, key: str, owner: str, uncertain: bool = False) -> bool:
        params = {"key": key, "owner": owner, "uncertain": int(uncertain), "now": self._clock()}
        return self._writer.write(pg_statements.RELEASE, params, _one_changed)

    def renew_leases(
        self, owner: str, keys: Collection[str], customers: Collection[str], lease_ttl_s: float
    ) -> None:
        leases, customer_leases = schema.renew_params(
            owner, keys, customers, self._clock() + lease_ttl_s
        )

        def renew(conn: Connection) -> None:
            with conn.cursor() as cursor:
                if leases:
                    cursor.executemany(_RENEW_LEASE, leases)
                if customer_leases:
                    cursor.executemany(_RENEW_CUSTOMER, customer_leases)

        self._run(renew)

    def unlock_customer(self, customer: str, owner: str) -> None:
        params = {"customer": customer, "owner": owner}
        # Waited for, unlike SQLite's single writer: with several writers an unwaited unlock
        # could commit after the caller's next write, which would then find it still held.
        self._writer.write(pg_statements.UNLOCK_CUSTOMER, params)

    def heartbeat(self, owner: str) -> None:
        params = {"owner": owner, "now": self._clock()}
        self._writer.write(pg_statements.HEARTBEAT, params)

    def forget_worker(self, owner: str) -> None:
        self._run(lambda conn: conn.execute(_FORGET_WORKER, {"owner": owner}))

    def purge_expired(
        self, retention_s: float, max_rows: int = schema.PURGE_MAX_ROWS_PER_RUN
    ) -> int:
        params = {"cutoff": self._clock() - retention_s, "batch": schema.PURGE_BATCH_ROWS}

        def purge(conn: Connection) -> int:
            deleted = 0
            while deleted < max_rows:
                batch = conn.execute(_PURGE_RECORDS, params).rowcount
                deleted += batch
                if batch < schema.PURGE_BATCH_ROWS:
                    break
            conn.execute(_PURGE_WORKERS, params)
            conn.execute(_PURGE_CUSTOMER_LEASES, params)
            return deleted

        return self._run(purge)

    def get(self, key: str) -> StoredRecord | None:
        row = self._run(lambda conn: conn.execute(_GET, {"key": key}).fetchone())
        return None if row is None else schema.stored_record(row)

    def transact(self, work: Callable[[Connection], T]) -> T:
        """``work`` in one transaction (``worker.store.order``)."""

        def in_transaction(conn: Connection) -> T:
            with conn.transaction():
                return work(conn)

        return self._run(in_transaction)

    def close(self) -> None:
        self._writer.close()
        self._pool.close()

    def open_connections(self) -> int:
        """Connections the pool holds now, in use or idle (at most its size)."""
        return int(self._pool.get_stats().get("pool_size", 0))


def _one_row(cursor: psycopg.Cursor[Any]) -> tuple[Any, ...]:
    row = cursor.fetchone()
    assert row is not None, "the statement returns one row"
    return tuple(row)


def _one_changed(cursor: psycopg.Cursor[Any]) -> bool:
    return cursor.rowcount == 1
