"""Failed-login counters per (account, client address) for growing back-off."""

from __future__ import annotations

import aiosqlite

from agnes.control._rows import change, one


async def get(conn: aiosqlite.Connection, key: str) -> tuple[int, float] | None:
    """(failures, blocked_until epoch seconds) or None."""
    row = await one(conn, "SELECT failures, blocked_until FROM login_failures WHERE key = ?", (key,))
    return None if row is None else (int(row["failures"]), float(row["blocked_until"]))


async def put(conn: aiosqlite.Connection, key: str, failures: int, now: float, blocked_until: float) -> None:
    await change(
        conn,
        "INSERT INTO login_failures (key, failures, last_failed_at, blocked_until) VALUES (?, ?, ?, ?)"
        " ON CONFLICT(key) DO UPDATE SET failures = excluded.failures,"
        " last_failed_at = excluded.last_failed_at, blocked_until = excluded.blocked_until",
        (key, failures, now, blocked_until),
    )


async def clear(conn: aiosqlite.Connection, key: str) -> None:
    await change(conn, "DELETE FROM login_failures WHERE key = ?", (key,))


async def forget_older_than(conn: aiosqlite.Connection, cutoff: float) -> None:
    await change(conn, "DELETE FROM login_failures WHERE last_failed_at < ? AND blocked_until < ?", (cutoff, cutoff))
