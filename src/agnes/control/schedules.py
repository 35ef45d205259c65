"""What the sync scheduler and the trigger need from `sources`: names, schedules, last tick.

`last_scheduled_at` belongs to the scheduler alone; it is advanced with a
compare-and-set so two schedulers (a misconfigured second server, a cron tick
delivered twice) can never enqueue the same tick twice.
"""

from __future__ import annotations

import aiosqlite
import msgspec

from agnes.control._rows import change, many


class ScheduledSource(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    schedule: str
    last_scheduled_at: str | None
    updated_at: str


async def source_names(conn: aiosqlite.Connection) -> list[str]:
    return [r["name"] for r in await many(conn, "SELECT name FROM sources ORDER BY name")]


async def scheduled(conn: aiosqlite.Connection) -> list[ScheduledSource]:
    rows = await many(conn, "SELECT name, schedule, last_scheduled_at, updated_at FROM sources "
                      "WHERE schedule IS NOT NULL AND trim(schedule) <> '' ORDER BY name")
    return [ScheduledSource(**r) for r in rows]


async def advance(conn: aiosqlite.Connection, name: str, *, seen: str | None, tick: str) -> bool:
    """Set last_scheduled_at to `tick` if it is still `seen`; False when another scheduler won."""
    return await change(conn, "UPDATE sources SET last_scheduled_at = ? WHERE name = ? AND last_scheduled_at IS ?",
                        (tick, name, seen)) == 1
