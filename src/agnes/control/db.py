"""The one way the server and the worker talk to the control plane (SQLite).

A small pool of aiosqlite connections, each in autocommit mode so that we
issue BEGIN ourselves: reads run concurrently (WAL never blocks readers),
writes are `BEGIN IMMEDIATE` transactions. Inside one process writers are
queued on an asyncio.Lock so pool connections do not busy-spin against each
other; across processes (server + worker) SQLite's own lock and a 10 s
busy_timeout serialize them.

Helpers return plain dicts (column name -> value), never sqlite Rows, so the
results can be handed to msgspec or JSON directly. Inside `read()` /
`transaction()` you hold a raw connection whose rows are `aiosqlite.Row`.

Do not nest: inside `transaction()` pass `conn` down instead of calling
`cp.execute()` / `cp.transaction()` again (that raises RuntimeError rather
than deadlocking).
"""

from __future__ import annotations

import asyncio
import contextvars
import sqlite3
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

Params = Iterable[Any] | Mapping[str, Any]

_PRAGMAS = (
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=10000",
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
)

# Which ControlPlane (by id) the current task is inside a transaction of.
_in_transaction: contextvars.ContextVar[int | None] = contextvars.ContextVar("agnes_cp_tx", default=None)


def utcnow_iso() -> str:
    """Now as '2026-12-04T16:39:40.123Z': UTC, milliseconds, sortable as text."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Executed:
    """What a single write statement did."""

    rowcount: int
    lastrowid: int | None


async def _connect(path: Path) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(str(path), isolation_level=None)
    conn.row_factory = aiosqlite.Row
    for pragma in _PRAGMAS:
        await conn.execute(pragma)
    return conn


class ControlPlane:
    """A pool of control-plane connections; create with `await ControlPlane.open(path)`."""

    def __init__(self, path: Path, conns: list[aiosqlite.Connection]) -> None:
        self.path = path
        self._pool: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        for conn in conns:
            self._pool.put_nowait(conn)
        self._all = list(conns)
        self._write_lock = asyncio.Lock()
        self._closed = False

    @classmethod
    async def open(cls, db_path: Path, pool_size: int = 4) -> ControlPlane:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        db_path = Path(db_path)
        conns: list[aiosqlite.Connection] = []
        try:
            for _ in range(pool_size):
                conns.append(await _connect(db_path))
        except BaseException:
            for conn in conns:
                await conn.close()
            raise
        return cls(db_path, conns)

    async def close(self) -> None:
        """Close every connection (waits for borrowed ones to come back)."""
        if self._closed:
            return
        self._closed = True
        conns = [await self._pool.get() for _ in range(len(self._all))]
        try:  # fold the WAL into the database now, so a stopped container leaves one complete file
            if conns:
                await conns[0].execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:  # busy (another process reads): SQLite checkpoints later on its own
            pass
        for conn in conns:
            await conn.close()
        self._all.clear()

    @asynccontextmanager
    async def _borrow(self) -> AsyncIterator[aiosqlite.Connection]:
        if self._closed:
            raise RuntimeError("ControlPlane is closed")
        conn = await self._pool.get()
        try:
            yield conn
        except BaseException:
            # Always roll back: a cancelled statement may still be running in the
            # connection's thread, and the ROLLBACK is queued behind it.
            await self._rollback_or_replace(conn)
            raise
        if conn.in_transaction:  # a reader left a BEGIN open; never hand that on
            await self._rollback_or_replace(conn)
        else:
            self._pool.put_nowait(conn)

    async def _rollback_or_replace(self, conn: aiosqlite.Connection) -> None:
        """Return `conn` to the pool clean; if that fails, swap in a fresh connection."""
        try:
            await conn.execute("ROLLBACK")
        except sqlite3.OperationalError as exc:
            if "no transaction is active" not in str(exc):
                await self._replace(conn)
                return
        except BaseException:
            await self._replace(conn)
            raise
        self._pool.put_nowait(conn)

    async def _replace(self, conn: aiosqlite.Connection) -> None:
        self._all.remove(conn)
        try:
            await conn.close()
        except Exception:  # noqa: S110 - it is being discarded anyway
            pass
        fresh = await _connect(self.path)
        self._all.append(fresh)
        self._pool.put_nowait(fresh)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[aiosqlite.Connection]:
        """A connection for reads; each statement is its own snapshot (autocommit)."""
        async with self._borrow() as conn:
            yield conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """`BEGIN IMMEDIATE` ... COMMIT; ROLLBACK and re-raise on any exception."""
        if _in_transaction.get() == id(self):
            raise RuntimeError("nested ControlPlane transaction: pass the connection down instead")
        token = _in_transaction.set(id(self))
        try:
            async with self._write_lock, self._borrow() as conn:
                await conn.execute("BEGIN IMMEDIATE")
                yield conn  # an exception here makes _borrow roll back
                await conn.execute("COMMIT")
        finally:
            _in_transaction.reset(token)

    async def fetch_one(self, sql: str, params: Params = ()) -> dict[str, Any] | None:
        """First row as a dict, or None."""
        async with self.read() as conn, conn.execute(sql, params) as cur:
            row = await cur.fetchone()
        return dict(row) if row is not None else None

    async def fetch_all(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        """All rows as dicts."""
        async with self.read() as conn, conn.execute(sql, params) as cur:
            rows = await cur.fetchall()
        return [dict(row) for row in rows]

    async def execute(self, sql: str, params: Params = ()) -> Executed:
        """One write statement in its own transaction."""
        async with self.transaction() as conn, conn.execute(sql, params) as cur:
            return Executed(rowcount=cur.rowcount, lastrowid=cur.lastrowid)

    async def ping(self) -> int:
        """The schema version (PRAGMA user_version); proves the database answers."""
        async with self.read() as conn, conn.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row is not None else 0
