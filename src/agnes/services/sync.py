"""Sync use cases: trigger, list, get and cancel jobs (API, web UI, CLI and the scheduler).

One request makes at most one job. If a queued or running job already covers
the request (all its sources; all tables, or a superset of the requested
ones), that job is returned instead: a double click, a retrying agent and a
cron tick during a long manual sync never start a second copy.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import aiosqlite
import msgspec

from agnes.control import audit
from agnes.control import jobs as jobs_repo
from agnes.control import sources as sources_repo
from agnes.control.jobs import JobRecord, JobTableRecord
from agnes.errors import AgnesError
from agnes.models import User
from agnes.services.instance import Instance
from agnes.services.source_types import type_of

log = logging.getLogger("agnes.sync")
JobStatus = Literal["queued", "running", "succeeded", "partial", "failed", "cancelled"]
CONFIGURE_HINT = "Configure one with POST /api/admin/configure {data_source: 'sample'} (or the setup wizard)."


class JobTable(msgspec.Struct, frozen=True):
    id: str  # '<source>.<table>'
    status: Literal["pending", "succeeded", "failed", "skipped"]
    rows: int | None
    bytes: int | None
    error: str | None
    warnings: list[str] = msgspec.field(default_factory=list)  # e.g. a column kept as text: values did not parse


class Job(msgspec.Struct, frozen=True, kw_only=True):
    """A sync job as the API shows it; final statuses are succeeded, partial, failed and cancelled."""

    id: int
    status: JobStatus
    sources: list[str]
    tables: list[JobTable]
    created_at: str
    started_at: str | None
    finished_at: str | None
    log_tail: str
    requested_tables: list[str] | None = None  # None = every table of each source
    trigger: str = "api"
    error: str | None = None
    cancel_requested: bool = False


class JobPage(msgspec.Struct, frozen=True):
    items: list[Job]
    count: int
    total: int
    limit: int
    offset: int


class Triggered(msgspec.Struct, frozen=True):
    job_id: int
    status: JobStatus
    sources: list[str]
    created: bool  # False: an overlapping queued/running job was returned instead


def job_view(job: JobRecord, tables: list[JobTableRecord]) -> Job:
    return Job(
        id=job.id, status=job.status, sources=job.sources,  # type: ignore[arg-type]
        tables=[JobTable(id=f"{t.source}.{t.table_name}", status=t.status, rows=t.rows, bytes=t.bytes,  # type: ignore[arg-type]
                         error=t.error, warnings=t.warnings) for t in tables],
        created_at=job.created_at, started_at=job.started_at, finished_at=job.finished_at, log_tail=job.log_tail,
        requested_tables=job.tables, trigger=job.trigger, error=job.error, cancel_requested=job.cancel_requested,
    )


def covers(job: JobRecord, sources: list[str], tables: list[str] | None) -> bool:
    """Does the active `job` already sync everything the request asks for?"""
    if not set(sources) <= set(job.sources):
        return False
    if job.tables is None:
        return True
    return tables is not None and set(tables) <= set(job.tables)


async def create_job(conn: aiosqlite.Connection, *, sources: list[str], tables: list[str] | None, trigger: str,
                     requested_by: int | None) -> tuple[JobRecord, bool]:
    """Inside the caller's transaction: the covering active job, or a new queued one (created=True)."""
    for job in await jobs_repo.active(conn):
        if covers(job, sources, tables):
            return job, False
    job = await jobs_repo.create(conn, sources=sources, tables=tables, trigger=trigger, requested_by=requested_by)
    return job, True


async def enqueue(instance: Instance, job: JobRecord) -> None:
    """Hand a new job to the queue; if the queue is down the job is failed, never left dangling."""
    if instance.jobs is None:
        log.warning("job %s stays queued: no job queue in this process (it runs after the next start)", job.id)
        return
    try:
        await instance.jobs.enqueue(job.id)
    except AgnesError as exc:
        async with instance.control.transaction() as conn:
            await jobs_repo.mark_failed_queued(conn, job.id, f"could not be queued: {exc.message}")
        raise


def _syncable(row: dict[str, Any]) -> bool:
    """Has a connector to run (external/Tier B sources are published from their inbox instead)."""
    stype = type_of(row["type"])
    return stype is None or stype.connector_name(row["options"]) is not None


def _check_request(rows: list[dict[str, Any]], source: str | None, tables: list[str] | None) -> list[str]:
    names = [r["name"] for r in rows]
    syncable = [r["name"] for r in rows if _syncable(r)]
    if tables and not source:
        raise AgnesError("tables_need_source", f"`tables` ({', '.join(tables[:5])}) needs `source`.")
    if not names:
        raise AgnesError("no_sources", "No source is configured yet, so there is nothing to sync.",
                         hint=CONFIGURE_HINT + " Then trigger again.")
    if source is not None and source not in names:
        raise AgnesError("source_not_found", f"No source is named {source!r}; configured: {', '.join(names)}.",
                         hint=f"Use one of: {', '.join(names)} (GET /api/admin/sources), or omit `source` to sync "
                              "all. To add a source: POST /api/admin/configure {data_source, name?}.")
    if source is not None and source not in syncable:
        raise AgnesError("source_not_syncable", f"Source {source!r} is external: Agnes publishes it when a run "
                         f"arrives in inbox/{source}/, there is no connector to run.")
    if not syncable:
        raise AgnesError("no_sources", f"No source has a connector to run (only external sources: {', '.join(names)}).",
                         hint=CONFIGURE_HINT + " Then trigger again.")
    return [source] if source else syncable


async def trigger_sync(instance: Instance, actor: User | None, *, source: str | None = None,
                       tables: list[str] | None = None, trigger: str = "api", ip: str | None = None) -> Triggered:
    """Create (or find) the job for `source` (None = all sources) and enqueue it."""
    wanted_tables = sorted(set(tables)) if tables else None
    async with instance.control.transaction() as conn:
        sources = _check_request(await sources_repo.list_all(conn), source, wanted_tables)
        job, created = await create_job(conn, sources=sources, tables=wanted_tables, trigger=trigger,
                                        requested_by=actor.id if actor else None)
        if created:
            await audit.record(conn, action="sync_triggered", actor=actor.email if actor else trigger,
                               actor_user_id=actor.id if actor else None, target=f"job:{job.id}",
                               detail={"sources": sources, "tables": wanted_tables}, ip=ip)
    if created:
        await enqueue(instance, job)
    return Triggered(job_id=job.id, status=job.status, sources=job.sources, created=created)  # type: ignore[arg-type]


async def get_job(instance: Instance, job_id: int) -> Job:
    async with instance.control.read() as conn:
        job = await jobs_repo.get(conn, job_id)
        if job is None:
            raise AgnesError("job_not_found", f"No job has id {job_id}.")
        tables = await jobs_repo.tables_of(conn, [job_id])
    return job_view(job, tables.get(job_id, []))


async def list_jobs(instance: Instance, *, status: str | None = None, source: str | None = None, limit: int = 50,
                    offset: int = 0) -> JobPage:
    async with instance.control.read() as conn:
        jobs, total = await jobs_repo.page(conn, status=status, source=source, limit=limit, offset=offset)
        tables = await jobs_repo.tables_of(conn, [j.id for j in jobs])
    items = [job_view(j, tables.get(j.id, [])) for j in jobs]
    return JobPage(items=items, count=len(items), total=total, limit=limit, offset=offset)


async def cancel_job(instance: Instance, actor: User | None, job_id: int, *, ip: str | None = None) -> Job:
    """Queued: cancelled at once. Running: flagged; its runner stops the connector within seconds."""
    async with instance.control.transaction() as conn:
        job = await jobs_repo.get(conn, job_id)
        if job is None:
            raise AgnesError("job_not_found", f"No job has id {job_id}.")
        after = await jobs_repo.request_cancel(conn, job_id)
        if after is None:
            raise AgnesError("job_finished", f"Job {job_id} already finished ({job.status}); nothing to cancel.")
        await audit.record(conn, action="sync_cancelled", actor=actor.email if actor else "system",
                           actor_user_id=actor.id if actor else None, target=f"job:{job_id}",
                           detail={"was": job.status}, ip=ip)
    return await get_job(instance, job_id)
