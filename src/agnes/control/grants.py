"""Grants of `read` on a table (`<source>.<table>`) or a whole source (`<source>.*`).

The only place that writes SQL about grants. Who may read what is decided in
services/permissions.py from `read_facts` (control/access.py) -- never here.
"""

from __future__ import annotations

from typing import Any

import aiosqlite

from agnes.control._rows import change, insert, many, one
from agnes.control.db import utcnow_iso

_SELECT = ("SELECT g.id, g.user_id, u.email AS user_email, g.target, g.source, g.created_at, g.created_by "
           "FROM grants g JOIN users u ON u.id = g.user_id")


async def delete_by_source(conn: aiosqlite.Connection, source: str) -> int:
    """Drop every grant on a source or one of its tables (a deleted source leaves none behind)."""
    return await change(conn, "DELETE FROM grants WHERE source = ?", (source,))


async def delete_by_target(conn: aiosqlite.Connection, target: str) -> int:
    """Drop the grants on exactly one table id ('<source>.<table>')."""
    return await change(conn, "DELETE FROM grants WHERE target = ?", (target,))


async def get(conn: aiosqlite.Connection, user_id: int, target: str) -> dict[str, Any] | None:
    return await one(conn, f"{_SELECT} WHERE g.user_id = ? AND g.target = ?", (user_id, target))


async def list_all(conn: aiosqlite.Connection, *, user_id: int | None = None, source: str | None = None,
                   target: str | None = None) -> list[dict[str, Any]]:
    where, params = [], []
    for column, value in (("g.user_id", user_id), ("g.source", source), ("g.target", target)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    return await many(conn, f"{_SELECT}{clause} ORDER BY g.user_id, g.target", params)


async def create(conn: aiosqlite.Connection, *, user_id: int, target: str, source: str,
                 created_by: int | None) -> int:
    return await insert(conn, "INSERT INTO grants (user_id, target, source, created_at, created_by) "
                              "VALUES (?, ?, ?, ?, ?)", (user_id, target, source, utcnow_iso(), created_by))


async def delete(conn: aiosqlite.Connection, user_id: int, target: str) -> int:
    return await change(conn, "DELETE FROM grants WHERE user_id = ? AND target = ?", (user_id, target))
