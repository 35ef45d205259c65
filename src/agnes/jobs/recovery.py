"""No job stays "running" after the process running it died.

Rules (design: a killed worker or server never leaves a job running forever):
- Every job runner has an owner id `role:pid@host#token` (token: random per process).
- A running job is dead when its owner is on this host and that pid is gone
  (or is this very process with another token: a restarted container reuses
  pids), or when its heartbeat is older than STALE_AFTER_SECONDS (any host).
- A dead job becomes `failed` ("the process running it stopped (heartbeat
  lost)") with a `sync_interrupted` health error per source. Its staging folder
  is unlocked once its process is gone and `cleanup_leftovers` removes it;
  the previous run never stopped serving, because publishing is one rename.
- Queued jobs whose queue entry may be lost are enqueued again (the in-process
  queue lives in memory; arq dedupes by `_job_id`).

Who runs it: the server at start and every few seconds in embedded mode;
in arq mode each worker at start and every minute (cron), and the server's
periodic sweep as a safety net when no worker is alive.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agnes.control import health_errors
from agnes.control import jobs as jobs_repo
from agnes.engine.publish import cleanup_leftovers
from agnes.jobs.runlog import STALE_AFTER_SECONDS
from agnes.services.instance import Instance

log = logging.getLogger("agnes.jobs")
PROCESS_TOKEN = secrets.token_hex(4)
LOST = "the process running it stopped (heartbeat lost)"


def owner_id(role: str) -> str:
    """Who runs a job: 'server:123@host#ab12cd34' or 'worker:…'."""
    return f"{role}:{os.getpid()}@{socket.gethostname()}#{PROCESS_TOKEN}"


def owner_is_dead(owner: str | None) -> bool:
    """True only when we can tell for sure (same host); other hosts go by heartbeat."""
    if not owner or ":" not in owner or "@" not in owner:
        return owner is None
    try:
        pid_part, rest = owner.split(":", 1)[1].split("@", 1)
        host, _, token = rest.partition("#")
        pid = int(pid_part)
    except ValueError:
        return False
    if host != socket.gethostname():
        return False
    if pid == os.getpid():
        return token != PROCESS_TOKEN
    return not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class RecoveryReport:
    failed: list[int] = field(default_factory=list)
    requeued: list[int] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def fail_dead_jobs(instance: Instance, *, stale_after: float = STALE_AFTER_SECONDS,
                         now: datetime | None = None) -> list[int]:
    """Mark running jobs of dead owners (or with a stale heartbeat) failed; returns their ids."""
    cutoff = _iso((now or datetime.now(UTC)) - timedelta(seconds=stale_after))
    async with instance.control.read() as conn:
        running = await jobs_repo.running(conn)
    failed: list[int] = []
    for job in running:
        dead = owner_is_dead(job.owner)
        stale = job.heartbeat_at is None or job.heartbeat_at < cutoff
        if not (dead or stale):
            continue
        async with instance.control.transaction() as conn:
            ok = await jobs_repo.fail_running(conn, job.id, owner=job.owner, error=LOST,
                                              heartbeat_before=None if dead else cutoff)
            if not ok:
                continue  # it finished or refreshed its heartbeat meanwhile
            for source in job.sources:
                await jobs_repo.settle_pending(conn, job.id, source, "failed", f"not published: {LOST}")
                await health_errors.raise_error(
                    conn, code="sync_interrupted", source=source,
                    message=f"job {job.id}: {LOST} (owner {job.owner}); the previous data keeps serving",
                )
        failed.append(job.id)
        log.warning("job %s failed by recovery: %s (owner %s, heartbeat %s)", job.id, LOST, job.owner,
                    job.heartbeat_at)
    return failed


async def requeue(instance: Instance, *, older_than: float = 0.0) -> list[int]:
    """Enqueue queued jobs again (at start, and for arq a lost Redis entry); returns the ids."""
    if instance.jobs is None:
        return []
    before = _iso(datetime.now(UTC) - timedelta(seconds=older_than)) if older_than else None
    async with instance.control.read() as conn:
        ids = await jobs_repo.queued_ids(conn, created_before=before)
    for job_id in ids:
        await instance.jobs.enqueue(job_id)
    return ids


async def recover(instance: Instance, *, requeue_queued: bool, clean: bool,
                  stale_after: float = STALE_AFTER_SECONDS) -> RecoveryReport:
    """The start-up sequence: fail dead jobs, clean leftovers, re-enqueue queued jobs."""
    report = RecoveryReport(failed=await fail_dead_jobs(instance, stale_after=stale_after))
    if clean:
        removed = await asyncio.to_thread(cleanup_leftovers, instance.settings.extracts_dir)
        report.cleaned = [str(p) for p in removed]
    if requeue_queued:
        report.requeued = await requeue(instance)
    if report.failed or report.requeued or report.cleaned:
        log.info("job recovery: failed %s, re-enqueued %s, cleaned %d leftover(s)", report.failed,
                 report.requeued, len(report.cleaned))
    return report
