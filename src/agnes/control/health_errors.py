"""Errors that /api/health shows until they are resolved."""

from __future__ import annotations

import aiosqlite

from agnes.control._rows import change, insert, many
from agnes.control.db import utcnow_iso
from agnes.models import HealthError


async def open_errors(conn: aiosqlite.Connection, limit: int = 50) -> list[HealthError]:
    rows = await many(
        conn,
        "SELECT id, at, code, source, message FROM health_errors WHERE resolved_at IS NULL ORDER BY id DESC LIMIT ?",
        (limit,),
    )
    return [HealthError(**r) for r in rows]


async def raise_error(conn: aiosqlite.Connection, *, code: str, message: str, source: str | None = None) -> int:
    return await insert(
        conn,
        "INSERT INTO health_errors (at, code, source, message) VALUES (?, ?, ?, ?)",
        (utcnow_iso(), code, source, message),
    )


async def resolve(conn: aiosqlite.Connection, *, source: str | None, code: str | None = None) -> int:
    sql = "UPDATE health_errors SET resolved_at = ? WHERE resolved_at IS NULL AND source IS ?"
    params: list[object] = [utcnow_iso(), source]
    if code is not None:
        sql += " AND code = ?"
        params.append(code)
    return await change(conn, sql, params)
