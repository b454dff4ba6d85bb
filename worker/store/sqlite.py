"""The embedded store: one SQLite file in WAL mode, a connection per thread.

``sqlite:///relative.db``, ``sqlite:////abs/path.db``, or ``sqlite:///:memory:`` (one shared
connection behind a lock, since every in-memory connection is its own database).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import TypeVar

from worker.store import BUSY_TIMEOUT_S, fingerprint_key, schema
from worker.store.connections import PerThreadConnections
from worker.store.group_commit import GroupCommitter
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

# How long a writer waits for another connection's write lock before failing: the store's
# ``busy_timeout_s`` (``PROVISIONER_STORE_BUSY_TIMEOUT``, 10 s by default).
# Writes do not wait there: SQLite's busy handler sleeps (1, 2, 5, 10 ... 100 ms) between
# retries. A file store's writes go through one writer thread per process, which commits
# them in batches (``group_commit``), and an flock on ``<db>.writer-lock`` orders the
# processes sharing the file (``--processes``), waking the next the moment one is done.
# The busy timeout still covers anything else that writes the file.
MEMORY_PATH = ":memory:"
WRITER_LOCK_SUFFIX = ".writer-lock"


def sqlite_path(url: str) -> str:
    path = url.removeprefix("sqlite:///")
    if not path or "?" in path:
        raise StoreError("a SQLite store URL is sqlite:///relative.db or sqlite:////abs/path.db")
    return path


class SqliteStore:
    dialect = "sqlite"

    def __init__(self, url: str, *, clock: Clock, busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        self.path = sqlite_path(url)
        self._busy_timeout_ms = max(1, round(busy_timeout_s * 1000))
        self._clock = clock
        self._memory_lock = threading.Lock()
        self._writer_file = -1  # opened with the schema, when the store is a file
        self._committer: GroupCommitter | None = None
        self._memory: sqlite3.Connection | None = None
        self._threads = PerThreadConnections(self._connect, lambda conn: conn.close())
        self._closed = False
        self._fingerprint_keys = FingerprintKeys(b"")
        try:
            with self._connection() as conn:
                self._fingerprint_keys = self._create_schema(conn)
            self._start_writer()
        except StoreError as exc:
            self.close()
            raise StoreError(f"cannot open the {exc}") from None

    # -- connections -------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            isolation_level=None,
            check_same_thread=False,
            timeout=self._busy_timeout_ms / 1000,
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            if self.path != MEMORY_PATH:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise sqlite3.OperationalError(f"journal_mode is {mode}, not wal")
            conn.execute("PRAGMA synchronous = NORMAL")
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection; driver errors become ``StoreError`` like PostgreSQL's."""
        try:
            if self.path != MEMORY_PATH:
                yield self._threads.get()
                return
            with self._memory_lock:
                if self._closed:
                    raise StoreError("the store is closed")
                if self._memory is None:
                    self._memory = self._connect()
                yield self._memory
        except sqlite3.Error as exc:
            raise self._store_error(exc) from exc

    def _start_writer(self) -> None:
        if self.path == MEMORY_PATH:
            return  # one connection behind a lock already serialises everything
        lock_path = self.path + WRITER_LOCK_SUFFIX
        try:
            self._writer_file = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreError(f"SQLite store at {self.path}: {lock_path}: {exc.strerror}") from None
        self._committer = GroupCommitter(self._connect, self._writer_file, self._store_error)

    def _store_error(self, exc: sqlite3.Error) -> StoreError:
        return StoreError(f"SQLite store at {self.path}: {exc}")

    def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` in a write transaction; returns once it is committed."""
        if self._committer is not None:
            return self._committer.write(work)
        with self._connection() as conn:
            return _in_transaction(conn, work)

    def _create_schema(self, conn: sqlite3.Connection) -> FingerprintKeys:
        def create(conn: sqlite3.Connection) -> FingerprintKeys:
            statements = schema.create_schema_sql(real="REAL", blob="BLOB")
            for statement in statements + order_schema_sql(real="REAL", blob="BLOB"):
                conn.execute(statement)
            for table, column, definition in schema.ADDED_COLUMNS:
                present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
                if column not in present:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
            params = fingerprint_key.fingerprint_key_params()
            conn.execute(fingerprint_key.MARK_LEGACY_FINGERPRINTS, params)
            conn.execute(fingerprint_key.ADD_FINGERPRINT_KEY, params)
            rows = conn.execute(fingerprint_key.READ_META).fetchall()
            return fingerprint_key.fingerprint_keys(rows)

        return _in_transaction(conn, create)

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

        def decide(conn: sqlite3.Connection) -> Claim:
            if (
                customer is not None
                and conn.execute(schema.LOCK_CUSTOMER, params).fetchone() is None
            ):
                return Claim(ClaimStatus.CUSTOMER_BUSY, 0)
            rows = conn.execute(schema.CLAIM, params).fetchall()
            if rows:
                return schema.acquired(rows[0])
            row = conn.execute(schema.READ_CLAIM, params).fetchone()
            # Inside the write transaction the record cannot change: "claimable" cannot happen.
            return schema.refused(row, params) or Claim(ClaimStatus.BUSY, 0)

        return self._write(decide)

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

        def store_result(conn: sqlite3.Connection) -> bool:
            stored = conn.execute(schema.COMPLETE, params).rowcount == 1
            if customer is not None:
                conn.execute(schema.UNLOCK_CUSTOMER, {"customer": customer, "owner": owner})
            return stored

        return self._write(store_result)

    def release(self, key: str, owner: str, uncertain: bool = False) -> bool:
        params = {"key": key, "owner": owner, "uncertain": int(uncertain), "now": self._clock()}
        return self._write(lambda conn: conn.execute(schema.RELEASE, params).rowcount == 1)

    def renew_leases(
        self, owner: str, keys: Collection[str], customers: Collection[str], lease_ttl_s: float
    ) -> None:
        leases, customer_leases = schema.renew_params(
            owner, keys, customers, self._clock() + lease_ttl_s
        )

        def renew(conn: sqlite3.Connection) -> None:
            conn.executemany(schema.RENEW_LEASE, leases)
            conn.executemany(schema.RENEW_CUSTOMER, customer_leases)

        self._write(renew)

    def unlock_customer(self, customer: str, owner: str) -> None:
        params = {"customer": customer, "owner": owner}

        def unlock(conn: sqlite3.Connection) -> None:
            conn.execute(schema.UNLOCK_CUSTOMER, params)

        if self._committer is not None:
            self._committer.submit(unlock)  # nobody needs to wait for this one
        else:
            self._write(unlock)

    def heartbeat(self, owner: str) -> None:
        params = {"owner": owner, "now": self._clock()}
        self._write(lambda conn: conn.execute(schema.HEARTBEAT, params))

    def forget_worker(self, owner: str) -> None:
        with self._connection() as conn:
            conn.execute(schema.FORGET_WORKER, {"owner": owner})

    def purge_expired(
        self, retention_s: float, max_rows: int = schema.PURGE_MAX_ROWS_PER_RUN
    ) -> int:
        params = {"cutoff": self._clock() - retention_s, "batch": schema.PURGE_BATCH_ROWS}
        deleted = 0
        with self._connection() as conn:
            while deleted < max_rows:
                batch = conn.execute(schema.PURGE_RECORDS, params).rowcount
                deleted += batch
                if batch < schema.PURGE_BATCH_ROWS:
                    break
            conn.execute(schema.PURGE_WORKERS, params)
            conn.execute(schema.PURGE_CUSTOMER_LEASES, params)
        return deleted

    def get(self, key: str) -> StoredRecord | None:
        with self._connection() as conn:
            row = conn.execute(schema.GET, {"key": key}).fetchone()
        return None if row is None else schema.stored_record(row)

    def transact(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work`` in one committed write transaction (``worker.store.order``)."""
        return self._write(work)

    def journal_mode(self) -> str:
        with self._connection() as conn:
            return str(conn.execute("PRAGMA journal_mode").fetchone()[0])

    def open_connections(self) -> int:
        """Connections currently open (one per thread that used the store and still runs)."""
        return self._threads.open_count() + (self._memory is not None)

    def close(self) -> None:
        if self._committer is not None:
            self._committer.close()
            self._committer = None
        self._threads.close_all()
        if self._writer_file >= 0:
            os.close(self._writer_file)
            self._writer_file = -1
        with self._memory_lock:
            self._closed = True
            if self._memory is not None:
                self._memory.close()
                self._memory = None


def _in_transaction(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    """``work`` in one write transaction (the write lock taken up front, so that two writers
    never deadlock upgrading a read), rolled back if it raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work(conn)
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result
