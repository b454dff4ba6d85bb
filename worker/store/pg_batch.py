"""Group commit for the PostgreSQL store: a few writer threads, one transaction per batch.

Each write (a claim, a completion, a release, an unlock, a heartbeat) is a transaction of
its own in autocommit mode, and every commit waits for the server to flush its WAL: with a
small pool, the commands' writes queued behind those flushes (390 commands/s from 64
threads on four connections, against 1,300 with a connection per thread). Here a pool
thread hands its write to the writer threads (``WRITERS``) and sleeps until its batch is
committed; a writer takes everything queued (up to ``MAX_BATCH``), runs it in one
transaction on a connection it borrows from the pool, and only then wakes the writers:
nothing is reported done before it is committed, and a batch costs one flush. Two writers
rather than one per pooled connection: while one waits for its flush the other gathers the
next batch, and batches stay large (0.25 commits per command in one process at c32 against
0.57 with four writers; the server's CPU per command 0.43 against 0.54 ms).

A batch goes out as one text: ``BEGIN``, the lock timeout, an ``EXECUTE`` of each write's
statement (prepared on every pooled connection when it opened, ``pg_statements.Batched``,
its values quoted by psycopg's client-side binding) and ``COMMIT``, sent at once and
answered at once: one round trip and one wait for the socket per batch. It was a libpq
pipeline before, also one round trip, but psycopg's pipeline polls the socket after every
statement it queues, and each poll gives up the GIL: under load the writer waited for the
GIL again behind the pool threads once per statement (a batch of ~50 took 80 ms of wall
time for 8 ms of the writer's CPU, and the commands' claims and completions waited ~110 ms
each). As one text a batch costs the writer a quarter of the CPU (~20 us a write), and the
commands wait ~45 ms; one process on PostgreSQL went from 517-597 to 692-806 commands/s.
A write's ``read`` turns a cursor positioned on its statement's result into its result.
A server connection without the prepared statements (behind a pooler in transaction mode)
turns the writer to the pipeline for good, with a warning: slower, but it needs no session.

A batch holds the rows its writes touched until it commits, so another batch needing one
of them waits; two such batches could wait for each other. ``lock_timeout`` ends such a
wait early (PostgreSQL's deadlock check only runs after a second), and a batch that fails
for any reason is rolled back and its writes run again one by one, each in its own
transaction with the store's usual retry, so that a failing write fails alone.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool, PoolTimeout

from worker.store.handoff import Write
from worker.store.pg_statements import Batched

T = TypeVar("T")

log = logging.getLogger(__name__)

MAX_BATCH = 64
WRITERS = 2  # writer threads per store (at most its pool size)
# A batch waiting this long for another's row lock gives up and runs its writes one by one.
BATCH_LOCK_TIMEOUT_MS = 200
SET_LOCK_TIMEOUT = f"SET LOCAL lock_timeout = {BATCH_LOCK_TIMEOUT_MS}"
CLOSE_TIMEOUT_S = 10.0

Connection = psycopg.Connection[Any]
Work = Callable[[Connection], Any]
Read = Callable[[Any], Any]
# Runs one write alone, in its own transaction, with the store's retry and error wrapping.
RunAlone = Callable[[Work], Any]
WrapError = Callable[[BaseException], Exception]


def _as_is(sent: Any) -> Any:
    return sent


@dataclass
class _Write(Write[Connection]):
    # ``work`` sends it alone; in a batch it is ``EXECUTE``d (``execute_text``).
    execute_text: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    read: Read = _as_is  # a cursor on its result -> the write's result

    def alone(self, conn: Connection) -> Any:
        """The write outside a batch: sent and read at once."""
        return self.read(self.work(conn))


class BatchWriter:
    def __init__(
        self,
        pool: ConnectionPool[Connection],
        writers: int,
        run_alone: RunAlone,
        wrap_error: WrapError,
    ) -> None:
        self._pool = pool
        self._run_alone = run_alone
        self._wrap_error = wrap_error
        self._cond = threading.Condition()
        self._queue: list[_Write] = []
        self._closed = False
        self._pipelined = False  # True once the prepared statements were found missing
        self._threads = [
            threading.Thread(target=self._run, name=f"store-writer-{i}", daemon=True)
            for i in range(max(1, writers))
        ]
        for thread in self._threads:
            thread.start()

    def write(
        self, statement: Batched, params: dict[str, Any], read: Callable[[Any], T] = _as_is
    ) -> T:
        """Run ``statement`` with ``params`` in the next committed batch; ``read`` of a
        cursor on its result once the batch committed."""
        request = _Write(
            lambda conn: conn.execute(statement.text, params),
            execute_text=statement.execute_text,
            params=params,
            read=read,
        )
        with self._cond:
            if self._closed:
                return self._run_alone(request.alone)  # type: ignore[no-any-return]
            self._queue.append(request)
            self._cond.notify()
        request.done.acquire()
        if request.error is not None:
            raise request.error
        result: T = request.result
        return result

    def close(self) -> None:
        """Commit what is queued, then stop the writer threads."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(CLOSE_TIMEOUT_S)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                if self._queue:
                    self._cond.notify()  # more than one batch queued: another writer's turn
            if not batch:
                return  # closed, and nothing left to write
            if len(batch) == 1 or not self._commit(batch):
                self._one_by_one(batch)
            for request in batch:
                request.done.release()

    def _commit(self, batch: list[_Write]) -> bool:
        """Every write of the batch in one transaction; False (rolled back) if it failed.
        No connection within the pool's wait fails the whole batch: one by one, each
        write would wait as long again."""
        try:
            with self._pool.connection() as conn:
                if self._pipelined:
                    for request, cursor in zip(batch, _in_one_pipeline(conn, batch), strict=True):
                        self._read(request, cursor)
                    return True
                cursor = _in_one_text(conn, batch)
                cursor.nextset()  # past BEGIN, on the lock timeout's SET
                for request in batch:
                    cursor.nextset()
                    self._read(request, cursor)
        except PoolTimeout as exc:
            error = self._wrap_error(exc)
            for request in batch:
                request.error = error
            return True
        except psycopg.errors.InvalidSqlStatementName:
            self._pipeline_from_now_on()
            return False
        except Exception as exc:  # a failing write, a lock wait, a lost connection
            log.info("a store batch failed, writing one by one: %s", type(exc).__name__)
            return False
        return True

    def _pipeline_from_now_on(self) -> None:
        # Only a server connection other than the one the pool prepared its statements on
        # lacks them: a pooler in transaction mode (README, "Sizing PostgreSQL connections").
        # psycopg's own prepared statements go through it (PgBouncer >= 1.21).
        if not self._pipelined:
            self._pipelined = True
            log.warning(
                "the store's prepared statements are missing on its server connection "
                "(PgBouncer in transaction mode?): batches go as a pipeline from now on"
            )

    @staticmethod
    def _read(request: _Write, cursor: Any) -> None:
        # Committed already: a read that fails is that write's error, never a reason to
        # write the batch again.
        try:
            request.result = request.read(cursor)
        except Exception as exc:
            request.error = exc

    def _one_by_one(self, batch: list[_Write]) -> None:
        for request in batch:
            try:
                request.result = self._run_alone(request.alone)
            except Exception as exc:  # handed to the waiting caller
                request.error = exc


def _in_one_text(conn: Connection, batch: list[_Write]) -> psycopg.ClientCursor[Any]:
    """One text, sent at once and answered at once: the server runs its statements in order
    and stops at the first error, after which nothing of the batch is committed. The cursor
    then holds one result per statement, on the first (``nextset``)."""
    cursor = psycopg.ClientCursor(conn)
    writes = [cursor.mogrify(request.execute_text, request.params) for request in batch]
    with _rolled_back_on_error(conn):
        cursor.execute(";\n".join(["BEGIN", SET_LOCK_TIMEOUT, *writes, "COMMIT"]))
    return cursor


def _in_one_pipeline(conn: Connection, batch: list[_Write]) -> list[Any]:
    """The same as a libpq pipeline of psycopg's own prepared statements, a cursor each: one
    round trip, but a poll of the socket per statement (see above)."""
    with _rolled_back_on_error(conn), conn.pipeline():
        conn.execute("BEGIN", prepare=False)
        conn.execute(SET_LOCK_TIMEOUT)
        sent = [request.work(conn) for request in batch]
        conn.execute("COMMIT", prepare=False)
    return sent


@contextlib.contextmanager
def _rolled_back_on_error(conn: Connection) -> Iterator[None]:
    try:
        yield
    except BaseException:
        if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
            with contextlib.suppress(psycopg.Error):
                conn.execute("ROLLBACK", prepare=False)
        raise
