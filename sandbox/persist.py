"""The optional SQLite file behind ``--state-file``: the sandbox's state survives a restart.

One row per customer (its whole record as JSON), one per deleted username and one per
applied mutation, each written in its own transaction right after the change, so a restart
(even a kill) never loses an answered change. Per-row writes keep a mutation O(1) however
many customers a soak creates.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (username TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tombstones (username TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS mutations (seq INTEGER PRIMARY KEY, entry TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class StateFile:
    """Thread-safe writer of the sandbox state to one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process kill, which is what a restart test needs.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def load(self) -> tuple[list[dict[str, Any]], list[str], list[dict[str, Any]], int]:
        """Return (customer records, tombstones, mutation log, next customer id)."""
        with self._lock:
            customers = [json.loads(r[0]) for r in self._db.execute("SELECT record FROM customers")]
            tombstones = [r[0] for r in self._db.execute("SELECT username FROM tombstones")]
            log = [
                json.loads(r[0])
                for r in self._db.execute("SELECT entry FROM mutations ORDER BY seq")
            ]
            row = self._db.execute("SELECT value FROM meta WHERE key = 'next_id'").fetchone()
        return customers, tombstones, log, int(row[0]) if row else 1

    def save(
        self,
        *,
        record: dict[str, Any] | None,
        username: str,
        previous_username: str | None,
        tombstone: bool,
        entry: dict[str, Any] | None,
        next_id: int,
    ) -> None:
        """Write one mutation (customer row, tombstone, log entry) atomically."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if previous_username is not None:
                    self._db.execute(
                        "DELETE FROM customers WHERE username = ?", (previous_username,)
                    )
                if record is None:
                    self._db.execute("DELETE FROM customers WHERE username = ?", (username,))
                else:
                    self._db.execute(
                        "INSERT OR REPLACE INTO customers (username, record) VALUES (?, ?)",
                        (username, json.dumps(record)),
                    )
                if tombstone:
                    self._db.execute("INSERT OR IGNORE INTO tombstones VALUES (?)", (username,))
                if entry is not None:
                    self._db.execute(
                        "INSERT INTO mutations (seq, entry) VALUES (?, ?)",
                        (entry["seq"], json.dumps(entry)),
                    )
                self._db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('next_id', ?)",
                    (str(next_id),),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def clear(self) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            for table in ("customers", "tombstones", "mutations", "meta"):
                self._db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()
