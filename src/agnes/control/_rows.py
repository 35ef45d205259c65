"""Small helpers that keep repository functions one line per query."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiosqlite


async def one(conn: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
    async with conn.execute(sql, params) as cur:
        row = await cur.fetchone()
    return dict(row) if row is not None else None


async def many(conn: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    async with conn.execute(sql, params) as cur:
        rows = await cur.fetchall()
    return [dict(r) for r in rows]


async def scalar(conn: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> Any:
    async with conn.execute(sql, params) as cur:
        row = await cur.fetchone()
    return None if row is None else row[0]


async def insert(conn: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> int:
    async with conn.execute(sql, params) as cur:
        return int(cur.lastrowid or 0)


async def change(conn: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> int:
    """Run an UPDATE/DELETE and return how many rows it touched."""
    async with conn.execute(sql, params) as cur:
        return cur.rowcount
