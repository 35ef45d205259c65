"""Append-only audit log: who did what, to what, from where."""

from __future__ import annotations

from typing import Any

import aiosqlite
import msgspec

from agnes.control._rows import insert, many
from agnes.control.db import utcnow_iso


async def record(
    conn: aiosqlite.Connection,
    *,
    action: str,
    actor: str,
    actor_user_id: int | None = None,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
    ip: str | None = None,
) -> int:
    return await insert(
        conn,
        "INSERT INTO audit_log (at, actor_user_id, actor, action, target, detail, ip) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (utcnow_iso(), actor_user_id, actor, action, target, msgspec.json.encode(detail or {}).decode(), ip),
    )


async def recent(conn: aiosqlite.Connection, limit: int = 100, action: str | None = None) -> list[dict[str, Any]]:
    if action:
        rows = await many(conn, "SELECT * FROM audit_log WHERE action = ? ORDER BY id DESC LIMIT ?", (action, limit))
    else:
        rows = await many(conn, "SELECT * FROM audit_log ORDER BY id DESC LIMIT ?", (limit,))
    for row in rows:
        row["detail"] = msgspec.json.decode(row["detail"])
    return rows
