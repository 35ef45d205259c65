"""Sync jobs and their per-table outcomes: the only SQL about `jobs` / `job_tables`.

State changes are conditional UPDATEs (`WHERE status = ...`, `AND owner = ...`)
so the server, several workers and the recovery sweep can race on one job and
exactly one of them wins; callers learn from the return value whether they did.
"""

from __future__ import annotations

from typing import Any

import aiosqlite
import msgspec

from agnes.control._rows import change, insert, many, one, scalar
from agnes.control.db import utcnow_iso

ACTIVE = ("queued", "running")
FINAL = ("succeeded", "partial", "failed", "cancelled")
_COLUMNS = ("id, kind, status, sources, tables, trigger, requested_by, created_at, started_at, finished_at, "
            "heartbeat_at, owner, cancel_requested, error, log_tail")


class JobRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    kind: str
    status: str
    sources: list[str]
    tables: list[str] | None
    trigger: str
    requested_by: int | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    heartbeat_at: str | None
    owner: str | None
    cancel_requested: bool
    error: str | None
    log_tail: str


class JobTableRecord(msgspec.Struct, frozen=True, kw_only=True):
    job_id: int
    source: str
    table_name: str
    status: str  # pending | succeeded | failed | skipped
    rows: int | None = None
    bytes: int | None = None
    error: str | None = None
    warnings: list[str] = msgspec.field(default_factory=list)


MAX_WARNINGS = 50  # per table and job; the job log keeps the count of the rest


def _job(row: dict[str, Any] | None) -> JobRecord | None:
    if row is None:
        return None
    row["sources"] = msgspec.json.decode(row["sources"])
    row["tables"] = msgspec.json.decode(row["tables"]) if row["tables"] is not None else None
    row["cancel_requested"] = bool(row["cancel_requested"])
    return JobRecord(**row)


def _json(value: list[str] | None) -> str | None:
    return None if value is None else msgspec.json.encode(value).decode()


async def create(conn: aiosqlite.Connection, *, sources: list[str], tables: list[str] | None, trigger: str,
                 requested_by: int | None) -> JobRecord:
    job_id = await insert(
        conn,
        "INSERT INTO jobs (kind, status, sources, tables, trigger, requested_by, created_at) "
        "VALUES ('sync', 'queued', ?, ?, ?, ?, ?)",
        (_json(sources), _json(tables), trigger, requested_by, utcnow_iso()),
    )
    job = await get(conn, job_id)
    assert job is not None
    return job


async def get(conn: aiosqlite.Connection, job_id: int) -> JobRecord | None:
    return _job(await one(conn, f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)))


async def active(conn: aiosqlite.Connection) -> list[JobRecord]:
    rows = await many(conn, f"SELECT {_COLUMNS} FROM jobs WHERE status IN ('queued', 'running') ORDER BY id")
    return [j for j in map(_job, rows) if j is not None]


def _filters(status: str | None, source: str | None) -> tuple[str, list[Any]]:
    where, params = [], []
    if status:
        where.append("status = ?")
        params.append(status)
    if source:
        where.append("EXISTS (SELECT 1 FROM json_each(jobs.sources) WHERE json_each.value = ?)")
        params.append(source)
    return (" WHERE " + " AND ".join(where)) if where else "", params


async def page(conn: aiosqlite.Connection, *, status: str | None, source: str | None, limit: int,
               offset: int) -> tuple[list[JobRecord], int]:
    """Newest first, with the total number of matching jobs."""
    where, params = _filters(status, source)
    total = int(await scalar(conn, f"SELECT count(*) FROM jobs{where}", params))
    rows = await many(conn, f"SELECT {_COLUMNS} FROM jobs{where} ORDER BY id DESC LIMIT ? OFFSET ?",
                      (*params, limit, offset))
    return [j for j in map(_job, rows) if j is not None], total


async def claim(conn: aiosqlite.Connection, job_id: int, owner: str) -> bool:
    """queued -> running for `owner`; False when someone else has it or it was cancelled."""
    now = utcnow_iso()
    return await change(
        conn,
        "UPDATE jobs SET status = 'running', owner = ?, started_at = ?, heartbeat_at = ? "
        "WHERE id = ? AND status = 'queued' AND cancel_requested = 0",
        (owner, now, now, job_id),
    ) == 1


async def heartbeat(conn: aiosqlite.Connection, job_id: int, owner: str, log_tail: str | None) -> bool:
    """Refresh the heartbeat (and the log); False when the job is no longer ours and running."""
    sql = "UPDATE jobs SET heartbeat_at = ?" + (", log_tail = ?" if log_tail is not None else "")
    params: list[Any] = [utcnow_iso(), *([log_tail] if log_tail is not None else [])]
    return await change(conn, sql + " WHERE id = ? AND status = 'running' AND owner = ?",
                        (*params, job_id, owner)) == 1


async def cancel_requested(conn: aiosqlite.Connection, job_id: int) -> bool:
    return bool(await scalar(conn, "SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)))


async def finish(conn: aiosqlite.Connection, job_id: int, owner: str, *, status: str, error: str | None,
                 log_tail: str) -> bool:
    """running -> final, only by the owner (a job the recovery sweep failed stays failed)."""
    assert status in FINAL
    return await change(
        conn,
        "UPDATE jobs SET status = ?, error = ?, log_tail = ?, finished_at = ?, heartbeat_at = NULL "
        "WHERE id = ? AND status = 'running' AND owner = ?",
        (status, error, log_tail, utcnow_iso(), job_id, owner),
    ) == 1


async def request_cancel(conn: aiosqlite.Connection, job_id: int) -> str | None:
    """A queued job is cancelled at once, a running one flagged; returns the status after, None if final."""
    now = utcnow_iso()
    if await change(conn, "UPDATE jobs SET status = 'cancelled', cancel_requested = 1, finished_at = ?, "
                    "error = 'cancelled before it started' WHERE id = ? AND status = 'queued'", (now, job_id)):
        return "cancelled"
    if await change(conn, "UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND status = 'running'", (job_id,)):
        return "running"
    return None


async def fail_running(conn: aiosqlite.Connection, job_id: int, *, owner: str | None, error: str,
                       heartbeat_before: str | None = None) -> bool:
    """Recovery: running -> failed when the owner (and, if given, the stale heartbeat) still match."""
    sql = ("UPDATE jobs SET status = 'failed', error = ?, finished_at = ?, heartbeat_at = NULL, "
           "log_tail = log_tail || ? WHERE id = ? AND status = 'running' AND owner IS ?")
    params: list[Any] = [error, utcnow_iso(), f"\n[agnes] {error}", job_id, owner]
    if heartbeat_before is not None:
        sql += " AND (heartbeat_at IS NULL OR heartbeat_at < ?)"
        params.append(heartbeat_before)
    return await change(conn, sql, params) == 1


async def running(conn: aiosqlite.Connection) -> list[JobRecord]:
    rows = await many(conn, f"SELECT {_COLUMNS} FROM jobs WHERE status = 'running' ORDER BY id")
    return [j for j in map(_job, rows) if j is not None]


async def queued_ids(conn: aiosqlite.Connection, created_before: str | None = None) -> list[int]:
    sql, params = "SELECT id FROM jobs WHERE status = 'queued'", []
    if created_before is not None:
        sql += " AND created_at < ?"
        params.append(created_before)
    return [r["id"] for r in await many(conn, sql + " ORDER BY id", params)]


async def mark_failed_queued(conn: aiosqlite.Connection, job_id: int, error: str) -> bool:
    return await change(conn, "UPDATE jobs SET status = 'failed', error = ?, finished_at = ? "
                        "WHERE id = ? AND status = 'queued'", (error, utcnow_iso(), job_id)) == 1


# --- per-table outcomes ---------------------------------------------------------------


async def set_table(conn: aiosqlite.Connection, job_id: int, source: str, table: str, status: str, *,
                    rows: int | None = None, size: int | None = None, error: str | None = None) -> None:
    await change(
        conn,
        "INSERT INTO job_tables (job_id, source, table_name, status, rows, bytes, error) VALUES (?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (job_id, source, table_name) DO UPDATE SET status = excluded.status, "
        "rows = coalesce(excluded.rows, rows), bytes = coalesce(excluded.bytes, bytes), error = excluded.error",
        (job_id, source, table, status, rows, size, error),
    )


async def add_warning(conn: aiosqlite.Connection, job_id: int, source: str, table: str, message: str) -> bool:
    """Append one warning to a table's outcome (the row is created pending if need be); False past MAX_WARNINGS."""
    return await change(
        conn,
        "INSERT INTO job_tables (job_id, source, table_name, status, warnings) VALUES (?, ?, ?, 'pending', "
        "json_array(?)) ON CONFLICT (job_id, source, table_name) DO UPDATE SET "
        "warnings = json_insert(coalesce(warnings, '[]'), '$[#]', ?) "
        "WHERE json_array_length(coalesce(warnings, '[]')) < ?",
        (job_id, source, table, message, message, MAX_WARNINGS),
    ) == 1


async def settle_pending(conn: aiosqlite.Connection, job_id: int, source: str | None, status: str,
                         error: str) -> int:
    """Give every still-pending table of one source (None: of every source) its final status."""
    sql = "UPDATE job_tables SET status = ?, error = ? WHERE job_id = ? AND status = 'pending'"
    if source is None:
        return await change(conn, sql, (status, error, job_id))
    return await change(conn, sql + " AND source = ?", (status, error, job_id, source))


async def tables_of(conn: aiosqlite.Connection, job_ids: list[int]) -> dict[int, list[JobTableRecord]]:
    if not job_ids:
        return {}
    marks = ", ".join("?" for _ in job_ids)
    rows = await many(conn, f"SELECT job_id, source, table_name, status, rows, bytes, error, warnings FROM job_tables "
                      f"WHERE job_id IN ({marks}) ORDER BY job_id, source, table_name", job_ids)
    found: dict[int, list[JobTableRecord]] = {}
    for row in rows:
        row["warnings"] = msgspec.json.decode(row["warnings"]) if row["warnings"] else []
        found.setdefault(row["job_id"], []).append(JobTableRecord(**row))
    return found


# --- per-source outcomes ----------------------------------------------------------------

SOURCE_STATUSES = ("succeeded", "partial", "failed", "cancelled", "skipped")


async def set_source(conn: aiosqlite.Connection, job_id: int, source: str, status: str, error: str | None) -> None:
    """Record one source's own outcome in a job (the job's status sums up all of them)."""
    assert status in SOURCE_STATUSES
    await change(
        conn,
        "INSERT INTO job_sources (job_id, source, status, error) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (job_id, source) DO UPDATE SET status = excluded.status, error = excluded.error",
        (job_id, source, status, error),
    )


async def sources_of(conn: aiosqlite.Connection, job_ids: list[int]) -> dict[int, dict[str, dict[str, Any]]]:
    """job id -> source -> {status, error} for the sources whose outcome was recorded."""
    if not job_ids:
        return {}
    marks = ", ".join("?" for _ in job_ids)
    rows = await many(conn, f"SELECT job_id, source, status, error FROM job_sources WHERE job_id IN ({marks}) "
                      "ORDER BY job_id, source", job_ids)
    found: dict[int, dict[str, dict[str, Any]]] = {}
    for row in rows:
        found.setdefault(row["job_id"], {})[row["source"]] = {"status": row["status"], "error": row["error"]}
    return found
