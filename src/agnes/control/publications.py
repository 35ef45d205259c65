"""What each source serves, and the global publication counter.

A job that publishes a run bumps the counter and stamps the source's row with
the new value in the same transaction; a serving process remembers the highest
serial it attached and re-attaches only sources with a higher one. One integer
read per poll, no file-system scanning, and no IPC between worker and server.
"""

from __future__ import annotations

from typing import Any

import aiosqlite
import msgspec

from agnes.control._rows import many, one, scalar
from agnes.control.db import utcnow_iso


class Publication(msgspec.Struct, frozen=True, kw_only=True):
    source: str
    run_id: str
    previous_run_id: str | None
    extracted_at: str | None
    published_at: str
    serial: int


async def counter(conn: aiosqlite.Connection) -> int:
    return int(await scalar(conn, "SELECT value FROM publication_counter WHERE id = 1") or 0)


async def bump(conn: aiosqlite.Connection) -> int:
    """Increment the counter (inside the caller's transaction) and return the new value."""
    return int(await scalar(conn, "UPDATE publication_counter SET value = value + 1 WHERE id = 1 RETURNING value"))


async def record(conn: aiosqlite.Connection, *, source: str, run_id: str, previous_run_id: str | None,
                 extracted_at: str | None) -> Publication:
    """Bump the counter and point `source` at `run_id` with the new serial (one transaction: the caller's)."""
    serial = await bump(conn)
    now = utcnow_iso()
    async with conn.execute(
        "INSERT INTO publications (source, run_id, previous_run_id, extracted_at, published_at, serial) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (source) DO UPDATE SET run_id = excluded.run_id, "
        "previous_run_id = excluded.previous_run_id, extracted_at = excluded.extracted_at, "
        "published_at = excluded.published_at, serial = excluded.serial",
        (source, run_id, previous_run_id, extracted_at, now, serial),
    ):
        pass
    return Publication(source=source, run_id=run_id, previous_run_id=previous_run_id, extracted_at=extracted_at,
                       published_at=now, serial=serial)


def _publication(row: dict[str, Any] | None) -> Publication | None:
    return Publication(**row) if row is not None else None


async def get(conn: aiosqlite.Connection, source: str) -> Publication | None:
    return _publication(await one(conn, "SELECT * FROM publications WHERE source = ?", (source,)))


async def since(conn: aiosqlite.Connection, serial: int) -> list[Publication]:
    """Publications newer than `serial` (all of them for 0), oldest first."""
    rows = await many(conn, "SELECT * FROM publications WHERE serial > ? ORDER BY serial", (serial,))
    return [Publication(**r) for r in rows]


async def all_sources(conn: aiosqlite.Connection) -> list[Publication]:
    return [Publication(**r) for r in await many(conn, "SELECT * FROM publications ORDER BY source")]
