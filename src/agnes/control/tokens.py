"""Long-lived API tokens, stored only as hashes."""

from __future__ import annotations

from typing import Any

import aiosqlite

from agnes.control._rows import change, insert, many, one
from agnes.control.db import utcnow_iso
from agnes.models import ApiToken

_COLUMNS = "id, name, prefix, created_at, expires_at, last_used_at, revoked_at"


def _token(row: dict[str, Any] | None) -> ApiToken | None:
    return None if row is None else ApiToken(**row)


async def create(
    conn: aiosqlite.Connection, *, user_id: int, name: str, prefix: str, token_hash: str, expires_at: str | None
) -> ApiToken:
    token_id = await insert(
        conn,
        "INSERT INTO api_tokens (user_id, name, prefix, token_hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
        (user_id, name, prefix, token_hash, utcnow_iso(), expires_at),
    )
    token = _token(await one(conn, f"SELECT {_COLUMNS} FROM api_tokens WHERE id = ?", (token_id,)))
    assert token is not None
    return token


async def list_for_user(conn: aiosqlite.Connection, user_id: int) -> list[ApiToken]:
    rows = await many(
        conn, f"SELECT {_COLUMNS} FROM api_tokens WHERE user_id = ? AND revoked_at IS NULL ORDER BY id", (user_id,)
    )
    return [ApiToken(**r) for r in rows]


async def find_active_by_hash(conn: aiosqlite.Connection, token_hash: str, now_iso: str) -> tuple[int, int] | None:
    """(token id, user id) for a usable token; revoked or expired ones are invisible."""
    row = await one(
        conn,
        "SELECT id, user_id FROM api_tokens WHERE token_hash = ? AND revoked_at IS NULL"
        " AND (expires_at IS NULL OR expires_at > ?)",
        (token_hash, now_iso),
    )
    return None if row is None else (row["id"], row["user_id"])


async def touch(conn: aiosqlite.Connection, token_id: int) -> None:
    await change(conn, "UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (utcnow_iso(), token_id))


async def revoke(conn: aiosqlite.Connection, token_id: int, user_id: int) -> ApiToken | None:
    updated = await change(
        conn,
        "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND user_id = ? AND revoked_at IS NULL",
        (utcnow_iso(), token_id, user_id),
    )
    if not updated:
        return None
    return _token(await one(conn, f"SELECT {_COLUMNS} FROM api_tokens WHERE id = ?", (token_id,)))
