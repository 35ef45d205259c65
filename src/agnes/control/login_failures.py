"""Failed-login counters per (account, client address) for growing back-off.

The counter is bumped *before* the password is verified, inside the same
`BEGIN IMMEDIATE` transaction that checks the block, so parallel guesses are
counted one by one (`count_attempt` is a single upsert with RETURNING).
"""

from __future__ import annotations

import aiosqlite

from agnes.control._rows import change, one


async def get(conn: aiosqlite.Connection, key: str) -> tuple[int, float] | None:
    """(failures, blocked_until epoch seconds) or None."""
    row = await one(conn, "SELECT failures, blocked_until FROM login_failures WHERE key = ?", (key,))
    return None if row is None else (int(row["failures"]), float(row["blocked_until"]))


async def count_attempt(conn: aiosqlite.Connection, key: str, now: float) -> int:
    """Add one attempt to `key` atomically and return the new count (1 for a new key)."""
    row = await one(
        conn,
        "INSERT INTO login_failures (key, failures, last_failed_at, blocked_until) VALUES (?, 1, ?, 0)"
        " ON CONFLICT(key) DO UPDATE SET failures = failures + 1, last_failed_at = excluded.last_failed_at"
        " RETURNING failures",
        (key, now),
    )
    assert row is not None
    return int(row["failures"])


async def block_until(conn: aiosqlite.Connection, key: str, until: float) -> None:
    await change(conn, "UPDATE login_failures SET blocked_until = ? WHERE key = ?", (until, key))


async def clear(conn: aiosqlite.Connection, key: str) -> None:
    await change(conn, "DELETE FROM login_failures WHERE key = ?", (key,))


async def forget_stale(conn: aiosqlite.Connection, *, last_failed_before: float, now: float) -> int:
    """Delete counters whose block is over and whose last failure is older than `last_failed_before`."""
    return await change(conn, "DELETE FROM login_failures WHERE last_failed_at < ? AND blocked_until <= ?",
                        (last_failed_before, now))
