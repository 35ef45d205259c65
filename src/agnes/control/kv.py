"""Instance-wide facts in the `settings` table (setup token hash, key fingerprint …)."""

from __future__ import annotations

import aiosqlite

from agnes.control._rows import change, scalar
from agnes.control.db import utcnow_iso

SETUP_TOKEN_HASH = "setup_token_hash"  # noqa: S105 — a key name, not a secret
ENCRYPTION_KEY_FINGERPRINT = "encryption_key_fingerprint"
KEBOOLA_ENV_SOURCE = "keboola_env_source"  # set once the env-provisioned keboola source was considered
UNREGISTERED_RESTRICTED = "unregistered_restricted:"  # + table id: it was restricted when an admin unregistered it


async def get(conn: aiosqlite.Connection, key: str) -> str | None:
    return await scalar(conn, "SELECT value FROM settings WHERE key = ?", (key,))


async def put(conn: aiosqlite.Connection, key: str, value: str) -> None:
    await change(
        conn,
        "INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?)"
        " ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        (key, value, utcnow_iso()),
    )


async def put_if_absent(conn: aiosqlite.Connection, key: str, value: str) -> str:
    """Store value unless one exists; return whichever value is stored now."""
    await change(
        conn, "INSERT OR IGNORE INTO settings (key, value, updated_at) VALUES (?, ?, ?)", (key, value, utcnow_iso())
    )
    stored = await get(conn, key)
    assert stored is not None
    return stored


async def delete(conn: aiosqlite.Connection, key: str) -> None:
    await change(conn, "DELETE FROM settings WHERE key = ?", (key,))


async def delete_prefix(conn: aiosqlite.Connection, prefix: str) -> int:
    """Delete every key starting with `prefix` (compared as text: `_` and `%` are not wildcards)."""
    return await change(conn, "DELETE FROM settings WHERE substr(key, 1, length(?)) = ?", (prefix, prefix))
