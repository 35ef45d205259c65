"""Sources and their encrypted secrets: the only place that writes SQL about them.

Secrets arrive here already encrypted (services own the key); rows come back
as plain dicts with `options` decoded from JSON.
"""

from __future__ import annotations

from typing import Any

import aiosqlite
import msgspec

from agnes.control._rows import change, many, one, scalar
from agnes.control.db import utcnow_iso

_COLUMNS = ("name, type, options, schedule, visible_to_all, origin, auto_discover, last_scheduled_at, "
            "created_at, updated_at")


def _source(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    row["options"] = msgspec.json.decode(row["options"])
    row["visible_to_all"] = bool(row["visible_to_all"])
    row["auto_discover"] = bool(row["auto_discover"])
    return row


def _json(value: Any) -> str:
    return msgspec.json.encode(value, order="sorted").decode()


async def get(conn: aiosqlite.Connection, name: str) -> dict[str, Any] | None:
    return _source(await one(conn, f"SELECT {_COLUMNS} FROM sources WHERE name = ?", (name,)))


async def list_all(conn: aiosqlite.Connection) -> list[dict[str, Any]]:
    rows = await many(conn, f"SELECT {_COLUMNS} FROM sources ORDER BY name")
    return [r for r in (_source(row) for row in rows) if r is not None]


async def names(conn: aiosqlite.Connection) -> list[str]:
    return [r["name"] for r in await many(conn, "SELECT name FROM sources ORDER BY name")]


async def create(
    conn: aiosqlite.Connection, *, name: str, type: str, options: dict[str, Any], schedule: str | None,
    visible_to_all: bool, origin: str, auto_discover: bool = True,
) -> None:
    now = utcnow_iso()
    await change(
        conn,
        "INSERT INTO sources (name, type, options, schedule, visible_to_all, origin, auto_discover, created_at,"
        " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (name, type, _json(options), schedule, int(visible_to_all), origin, int(auto_discover), now, now),
    )


async def update(
    conn: aiosqlite.Connection, name: str, *, options: dict[str, Any] | None = None,
    schedule: str | None | msgspec.UnsetType = msgspec.UNSET, visible_to_all: bool | None = None,
) -> None:
    """Change the given fields and bump updated_at (a first schedule counts from it; last_scheduled_at
    belongs to the scheduler, control/schedules.py)."""
    sets, params = ["updated_at = ?"], [utcnow_iso()]
    if options is not None:
        sets.append("options = ?")
        params.append(_json(options))
    if schedule is not msgspec.UNSET:
        sets.append("schedule = ?")
        params.append(schedule)
    if visible_to_all is not None:
        sets.append("visible_to_all = ?")
        params.append(int(visible_to_all))
    await change(conn, f"UPDATE sources SET {', '.join(sets)} WHERE name = ?", (*params, name))


async def clear_auto_discover(conn: aiosqlite.Connection, name: str) -> None:
    """The source's first discovery is done; later syncs extract what is registered."""
    await change(conn, "UPDATE sources SET auto_discover = 0 WHERE name = ?", (name,))


async def delete(conn: aiosqlite.Connection, name: str) -> int:
    """Delete the source; secrets, registry rows and its publication cascade; its job outcomes go too."""
    await change(conn, "DELETE FROM job_sources WHERE source = ?", (name,))
    return await change(conn, "DELETE FROM sources WHERE name = ?", (name,))


# --- secrets (ciphertext only) -----------------------------------------------------

async def secrets_of(conn: aiosqlite.Connection, name: str) -> list[dict[str, Any]]:
    """[{key, ciphertext, env_ref, updated_at}] of one source."""
    return await many(conn, "SELECT key, ciphertext, env_ref, updated_at FROM source_secrets WHERE source = ? "
                            "ORDER BY key", (name,))


async def secret_refs(conn: aiosqlite.Connection) -> dict[str, dict[str, str | None]]:
    """source -> {secret key -> env var it came from (or None)}: what the export needs, no ciphertext."""
    refs: dict[str, dict[str, str | None]] = {}
    for row in await many(conn, "SELECT source, key, env_ref FROM source_secrets ORDER BY source, key"):
        refs.setdefault(row["source"], {})[row["key"]] = row["env_ref"]
    return refs


async def put_secret(conn: aiosqlite.Connection, name: str, key: str, ciphertext: str, env_ref: str | None) -> None:
    await change(
        conn,
        "INSERT INTO source_secrets (source, key, ciphertext, env_ref, updated_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT(source, key) DO UPDATE SET ciphertext = excluded.ciphertext, env_ref = excluded.env_ref,"
        " updated_at = excluded.updated_at",
        (name, key, ciphertext, env_ref, utcnow_iso()),
    )


async def set_secret_ref(conn: aiosqlite.Connection, name: str, key: str, env_ref: str | None) -> None:
    await change(conn, "UPDATE source_secrets SET env_ref = ? WHERE source = ? AND key = ?", (env_ref, name, key))


async def delete_secret(conn: aiosqlite.Connection, name: str, key: str) -> None:
    await change(conn, "DELETE FROM source_secrets WHERE source = ? AND key = ?", (name, key))


# --- read-only views of sync state (tables owned by the jobs/publishing code) ------

async def active_jobs(conn: aiosqlite.Connection, name: str) -> list[int]:
    """Ids of queued/running jobs that include this source."""
    rows = await many(
        conn,
        "SELECT id FROM jobs WHERE status IN ('queued', 'running')"
        " AND EXISTS (SELECT 1 FROM json_each(jobs.sources) WHERE value = ?) ORDER BY id",
        (name,),
    )
    return [r["id"] for r in rows]


async def last_job(conn: aiosqlite.Connection, name: str) -> dict[str, Any] | None:
    """The newest job that ran (or will run) this source, with this source's own outcome.

    `status`/`error` are the source's (job_sources) once its outcome is recorded, else the job's
    (queued, running, or failed by recovery). Jobs that skipped it do not count, and neither do
    jobs older than the source: one deleted and created again starts as never_synced.
    """
    return await one(
        conn,
        "SELECT j.id, coalesce(s.status, j.status) AS status, j.created_at, j.started_at, j.finished_at,"
        " CASE WHEN s.status IS NULL THEN j.error ELSE s.error END AS error"
        " FROM jobs j LEFT JOIN job_sources s ON s.job_id = j.id AND s.source = ?"
        " WHERE EXISTS (SELECT 1 FROM json_each(j.sources) WHERE value = ?)"
        " AND j.created_at >= (SELECT created_at FROM sources WHERE name = ?)"
        " AND (s.status IS NULL OR s.status != 'skipped')"
        " ORDER BY j.id DESC LIMIT 1",
        (name, name, name),
    )


async def publication(conn: aiosqlite.Connection, name: str) -> dict[str, Any] | None:
    return await one(conn, "SELECT run_id, extracted_at, published_at FROM publications WHERE source = ?", (name,))


async def table_count(conn: aiosqlite.Connection, name: str) -> int:
    return int(await scalar(conn, "SELECT count(*) FROM registered_tables WHERE source = ?", (name,)))
