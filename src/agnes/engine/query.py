"""Run guarded queries on the serving catalog with time, row, memory and concurrency caps.

Why this shape: DuckDB blocks, so every query runs on a worker thread of a
bounded pool (the event loop stays responsive); an asyncio semaphore admits at
most `max_concurrency` queries and a short, bounded queue, so a burst gets a
clear `QueryBusy` instead of piling up memory. DuckDB has no statement
timeout: a timer interrupts the query's own cursor. DuckDB's memory_limit
(set by the connection policy) covers the whole instance; see limits.py for
the process cap that catches allocations DuckDB does not track.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from collections.abc import Set as AbstractSet
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from agnes.engine.catalog import ServingCatalog
from agnes.engine.deadline import Deadline
from agnes.engine.sql_guard import (
    NOT_FOUND_HINT,
    GuardedQuery,
    QueryRefused,
    Resolver,
    check_query,
    make_resolver,
    sanitize_message,
)

SHORT_SQL_CHARS = 4_000  # shorter SQL is checked without waiting for a long-check turn
LONG_CHECKS = 2

__all__ = [
    "HTTP_STATUS", "ArrowStream", "GuardedQuery", "QueryBusy", "QueryExecutor", "QueryFailed", "QueryRefused",
    "QueryResult", "QueryTimeout",
]

# The status each error code should get from the API; table_not_found is 404 for both
# "missing" and "not yours" (one answer, so nobody can probe for names).
HTTP_STATUS = {
    "query_syntax": 400, "multiple_statements": 400, "query_too_long": 413, "query_too_complex": 400,
    "query_not_allowed": 403,
    "function_not_allowed": 403, "table_not_found": 404, "query_timeout": 408, "query_busy": 503,
    "query_failed": 422, "query_out_of_memory": 422, "query_cancelled": 503,
}


class QueryTimeout(Exception):
    """The query ran past its time limit and was interrupted (the API answers 408)."""

    code = "query_timeout"

    def __init__(self, seconds: float) -> None:
        self.message = f"The query ran longer than {seconds:g} s and was stopped."
        self.hint = ("Filter earlier (WHERE), aggregate, or add LIMIT; for large exports download "
                     "the table as Parquet and query it locally.")
        super().__init__(self.message)


class QueryBusy(Exception):
    """Every query slot is taken and the queue is full or waited too long (503/429 + Retry-After)."""

    code = "query_busy"

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        self.message = "Too many queries are running on this instance right now."
        self.hint = f"Retry in {retry_after} s (the Retry-After header says the same)."
        super().__init__(self.message)


class QueryFailed(Exception):
    """DuckDB refused or failed the query at run time; the message is sanitized (no paths)."""

    def __init__(self, code: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.hint = code, message, hint


@dataclass(frozen=True)
class QueryResult:
    columns: list[tuple[str, str]]  # (name, DuckDB type)
    table: pa.Table
    truncated: bool  # more rows existed than the limit
    elapsed_ms: float


class _Job:
    """The cursor a query runs on, so a timer or a cancelled request can interrupt it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cursor: duckdb.DuckDBPyConnection | None = None
        self.stopped = False
        self.timed_out = False

    def attach(self, cursor: duckdb.DuckDBPyConnection | None) -> None:
        with self.lock:
            if cursor is not None and self.stopped:
                raise duckdb.InterruptException("stopped before start")
            self.cursor = cursor

    def stop(self, *, timeout: bool = False) -> None:
        with self.lock:
            self.timed_out = self.timed_out or timeout
            self.stopped = True
            if self.cursor is not None:
                self.cursor.interrupt()


def _open_reader(cursor: duckdb.DuckDBPyConnection, sql: str, rows: int, batch: int) -> tuple[Any, Any]:
    # Kept tiny on purpose: DuckDB's Python replacement scan resolves unknown table names
    # from the CALLER's local variables; nothing here is a DataFrame or an Arrow object.
    relation = cursor.sql(sql)
    if relation is None:
        raise duckdb.InvalidInputException("the statement returns no rows")
    return relation, relation.limit(rows).to_arrow_reader(batch)


class QueryExecutor:
    """Runs `GuardedQuery`s on a `ServingCatalog` (one per serving process)."""

    def __init__(
        self,
        catalog: ServingCatalog,
        *,
        max_concurrency: int = 4,
        timeout_s: float = 30.0,
        max_rows: int = 10_000,
        stream_max_rows: int = 5_000_000,
        stream_timeout_s: float = 300.0,
        queue_size: int = 16,
        queue_timeout_s: float = 10.0,
        batch_rows: int = 50_000,
        max_result_bytes: int = 64 * 1024**2,
    ) -> None:
        self.catalog = catalog
        self.max_concurrency, self.timeout_s, self.max_rows = max_concurrency, timeout_s, max_rows
        self.stream_max_rows, self.stream_timeout_s = stream_max_rows, stream_timeout_s
        self.queue_size, self.queue_timeout_s, self.batch_rows = queue_size, queue_timeout_s, batch_rows
        self.max_result_bytes = max_result_bytes
        self._stoppers: set[asyncio.Future[None]] = set()
        # + the checks of long SQL, + one thread so a short check never waits behind them all
        self._pool = ThreadPoolExecutor(max_workers=max_concurrency + LONG_CHECKS + 1, thread_name_prefix="agnes-query")
        self._long_checks: asyncio.Semaphore | None = None
        self._slots: asyncio.Semaphore | None = None
        self._waiting = 0
        self._resolver: tuple[tuple[Any, ...], Resolver] | None = None

    # --- checking ---------------------------------------------------------------------

    def resolver(self) -> Resolver:
        """Names -> table ids as the catalog serves them now (rebuilt after each publication)."""
        key = tuple(self.catalog.sources.items())
        cached = self._resolver
        if cached is None or cached[0] != key:
            cached = (key, make_resolver(t.id for t in self.catalog.tables()))
            self._resolver = cached
        return cached[1]

    def describe(self) -> list[tuple[str, list[tuple[str, str]], str | None]]:
        """(id, columns, description) of every served table: the guard's information_schema rows."""
        return [(t.id, t.columns, t.description) for t in self.catalog.tables()]

    def check(self, sql: str, *, readable: Callable[[str], bool] | AbstractSet[str]) -> GuardedQuery:
        return check_query(sql, readable=readable, resolve=self.resolver(), describe=self.describe)

    async def guard(self, sql: str, *, readable: Callable[[str], bool] | AbstractSet[str]) -> GuardedQuery:
        """`check` on a worker thread (parsing 100 KB of SQL should not stall the loop).

        Checks run before a query slot is taken, so at most LONG_CHECKS checks of long SQL run at
        once (each may hold a parse tree of several MB); short SQL never waits for them."""
        loop = asyncio.get_running_loop()
        if len(sql) <= SHORT_SQL_CHARS:
            return await loop.run_in_executor(self._pool, lambda: self.check(sql, readable=readable))
        if self._long_checks is None:
            self._long_checks = asyncio.Semaphore(LONG_CHECKS)
        await self._long_checks.acquire()
        future = loop.run_in_executor(self._pool, lambda: self.check(sql, readable=readable))
        # released when the thread ends, not when a cancelled request stops waiting for it
        future.add_done_callback(lambda f: (self._long_checks.release(), f.cancelled() or f.exception()))  # type: ignore[union-attr]
        return await asyncio.shield(future)

    # --- running ----------------------------------------------------------------------

    async def run(self, guarded: GuardedQuery, *, limit: int | None = None) -> QueryResult:
        """Run to at most `limit` rows (capped at `max_rows`) and about `max_result_bytes`;
        `truncated` tells that more rows existed than were returned."""
        limit = self.max_rows if limit is None else max(0, min(limit, self.max_rows))
        job = _Job()
        return await self._in_slot(job, lambda: self._run_sync(job, guarded.sql, limit))

    def _run_sync(self, job: _Job, sql: str, limit: int) -> QueryResult:
        started = time.perf_counter()
        timer = Deadline(self.timeout_s, lambda: job.stop(timeout=True))
        timer.daemon = True
        with self.catalog.cursor() as cursor:
            try:
                job.attach(cursor)
                timer.start()
                relation, reader = _open_reader(cursor, sql, limit + 1, min(1024, limit + 1))
                columns = [(name, str(type_)) for name, type_ in zip(relation.columns, relation.types, strict=True)]
                batches, rows, size = [], 0, 0
                for batch in reader:
                    batches.append(batch)
                    rows, size = rows + batch.num_rows, size + batch.nbytes
                    if size > self.max_result_bytes:  # wide rows: stop early, report truncated
                        limit = min(limit, rows - 1)
                        break
                table = pa.Table.from_batches(batches, schema=reader.schema)
            except duckdb.Error as exc:
                raise _translate(exc, job, self.timeout_s) from None
            finally:
                timer.cancel()
                job.attach(None)
        return QueryResult(columns, table.slice(0, limit), rows > limit, (time.perf_counter() - started) * 1000)

    async def stream_arrow(
        self, guarded: GuardedQuery, *, batch_rows: int | None = None, max_rows: int | None = None
    ) -> ArrowStream:
        """Start a query for a large Arrow/CSV answer. Binding and the first batch happen here,
        so every early failure raises before a response is started; iterate (or `aclose()`)
        to release the query slot."""
        cap = self.stream_max_rows if max_rows is None else max(0, min(max_rows, self.stream_max_rows))
        stream = ArrowStream(self, guarded.sql, batch_rows or self.batch_rows, cap)
        await self._acquire()
        try:
            await stream._call(stream._start)
        except BaseException:
            await stream.aclose()  # waits for a start still running on its thread, then frees the slot
            raise
        return stream

    async def _in_slot(self, job: _Job, work: Callable[[], QueryResult]) -> QueryResult:
        await self._acquire()
        future = asyncio.get_running_loop().run_in_executor(self._pool, work)
        future.add_done_callback(lambda f: (self._release(), f.cancelled() or f.exception()))
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # The client went away: stop the work; the slot frees when the thread ends.
            stopper = asyncio.ensure_future(_stop_until_done(job, future))
            self._stoppers.add(stopper)
            stopper.add_done_callback(self._stoppers.discard)
            raise

    async def _acquire(self) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_concurrency)
        if self._slots.locked() and self._waiting >= self.queue_size:
            raise QueryBusy(self._retry_after())
        self._waiting += 1
        try:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancellation that
            # arrives as the slot is granted, and the abandoned query then ran to its time limit.
            async with asyncio.timeout(self.queue_timeout_s):
                await self._slots.acquire()
        except TimeoutError:
            raise QueryBusy(self._retry_after()) from None
        finally:
            self._waiting -= 1

    def _release(self) -> None:
        assert self._slots is not None
        self._slots.release()

    def _retry_after(self) -> int:
        return max(1, round(min(self.timeout_s, self.queue_timeout_s)))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


async def _stop_until_done(job: _Job, work: asyncio.Future[Any]) -> None:
    """Interrupt until the work ends: an interrupt sent just before DuckDB started executing is
    lost, and the query would then hold its slot until its time limit."""
    while not work.done():
        job.stop()
        await asyncio.wait([work], timeout=0.05)


class ArrowStream:
    """Record batches of one running query; holds a query slot and a cursor until closed."""

    def __init__(self, executor: QueryExecutor, sql: str, batch_rows: int, max_rows: int) -> None:
        self._executor, self._sql, self._batch_rows, self._max_rows = executor, sql, batch_rows, max_rows
        self._job = _Job()
        self._stack = ExitStack()
        self._reader: Any = None
        self._first: pa.RecordBatch | None = None
        self._rows = 0
        self._closed = False
        self._pending: Future[Any] | None = None
        self._closing: asyncio.Future[None] | None = None
        self.schema: pa.Schema | None = None
        self.columns: list[tuple[str, str]] = []
        self.truncated = False  # known once the stream is exhausted

    def _start(self) -> None:
        timer = Deadline(self._executor.stream_timeout_s, lambda: self._job.stop(timeout=True))
        timer.daemon = True
        self._stack.callback(timer.cancel)
        cursor = self._stack.enter_context(self._executor.catalog.cursor())
        self._stack.callback(self._job.attach, None)
        try:
            self._job.attach(cursor)
            timer.start()
            relation, self._reader = _open_reader(cursor, self._sql, self._max_rows + 1, self._batch_rows)
            self.columns = [(n, str(t)) for n, t in zip(relation.columns, relation.types, strict=True)]
            self.schema = self._reader.schema
            self._first = self._next_sync()
        except duckdb.Error as exc:
            raise _translate(exc, self._job, self._executor.stream_timeout_s) from None

    def _next_sync(self) -> pa.RecordBatch | None:
        if self._job.stopped:  # timed out or closed between two reads: do not start another
            raise _translate(duckdb.InterruptException("stopped"), self._job, self._executor.stream_timeout_s)
        try:
            batch = self._reader.read_next_batch()
        except StopIteration:
            return None
        except duckdb.Error as exc:
            raise _translate(exc, self._job, self._executor.stream_timeout_s) from None
        if self._rows + batch.num_rows > self._max_rows:
            self.truncated = True
            batch = batch.slice(0, self._max_rows - self._rows)
        self._rows += batch.num_rows
        return batch

    def _finish(self) -> None:
        self._reader = None
        self._stack.close()

    async def _call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the pool, remembering it so `aclose` never closes the cursor under it."""
        self._pending = self._executor._pool.submit(fn)
        return await asyncio.wrap_future(self._pending)

    def __aiter__(self) -> AsyncIterator[pa.RecordBatch]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[pa.RecordBatch]:
        try:
            batch, self._first = self._first, None
            while batch is not None and not self._closed:
                if batch.num_rows:
                    yield batch
                if self.truncated:
                    break
                batch = await self._call(self._next_sync)
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Stop the query, close its cursor and free the slot (idempotent; survives cancellation)."""
        if self._closing is None:
            self._job.stop()
            self._closing = asyncio.ensure_future(self._cleanup())
        await asyncio.shield(self._closing)

    async def _cleanup(self) -> None:
        self._closed = True
        try:
            if self._pending is not None:
                waiter = asyncio.wrap_future(self._pending)
                await _stop_until_done(self._job, waiter)
                _ = waiter.cancelled() or waiter.exception()  # its error was (or will never be) reported
            await asyncio.wrap_future(self._executor._pool.submit(self._finish))
        finally:
            self._executor._release()

    async def __aenter__(self) -> ArrowStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


_TABLE_MISSING = re.compile(r"Table with name .* does not exist", re.S)


def _translate(exc: duckdb.Error, job: _Job, seconds: float) -> Exception:
    """DuckDB's error -> ours, without paths, internal names or catalog suggestions."""
    if isinstance(exc, duckdb.InterruptException):
        if job.timed_out:
            return QueryTimeout(seconds)
        return QueryFailed("query_cancelled", "The query was cancelled.")
    if isinstance(exc, duckdb.OutOfMemoryException):
        return QueryFailed("query_out_of_memory", "The query needed more memory than this instance allows.",
                           "Aggregate or filter earlier, select fewer columns, or add LIMIT.")
    text = str(exc)
    if isinstance(exc, duckdb.CatalogException) and _TABLE_MISSING.search(text):
        return QueryFailed("table_not_found", f"A table in the query does not exist (any more) or you have no "
                           f"access to it. {NOT_FOUND_HINT}", NOT_FOUND_HINT)
    return QueryFailed("query_failed", sanitize_message(text))
