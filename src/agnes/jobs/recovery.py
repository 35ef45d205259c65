"""No job stays "running" after the process running it died.

Rules (design: a killed worker or server never leaves a job running forever):
- Every job runner has an owner id `role:pid@host#token~pidns` (token: random
  per process; pidns: the inode of /proc/self/ns/pid). Older rows have no
  `~pidns` (or no `#token`) and are judged by host alone, as before.
- A running job is dead when its owner is on this host, in this pid namespace
  (containers sharing a hostname have different ones: their pids say nothing
  here), and that pid is gone (or is this very process with another token: a
  restarted container reuses pids), or when its heartbeat is older than
  STALE_AFTER_SECONDS (any host).
- A dead job becomes `failed` ("the process running it stopped (heartbeat
  lost)") with a `sync_interrupted` health error per source. Its staging folder
  is unlocked once its process is gone and `cleanup_leftovers` removes it.
- The control plane's `publications` row is the commit point of a publication
  (engine/publish.py): whatever it records is what is served. For each source
  of a dead job, `reconcile_source` re-points `current`/`previous` at the
  recorded runs (a kill after the record but before the pointer switch) and
  the recorded run's tables are registered again (a kill before registration;
  registering is idempotent). At start-up every source is reconciled and runs
  that are neither the recorded run nor the recorded previous run (a kill
  between installing a run and recording it) are removed - only while no sync
  holds the source's `.sync.lock`, so a live sync in another process is never
  touched.
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

from agnes.control import health_errors, publications
from agnes.control import jobs as jobs_repo
from agnes.engine import publish
from agnes.engine.publish import cleanup_leftovers
from agnes.jobs.runlog import STALE_AFTER_SECONDS
from agnes.services.instance import Instance

log = logging.getLogger("agnes.jobs")
PROCESS_TOKEN = secrets.token_hex(4)
LOST = "the process running it stopped (heartbeat lost)"


def pid_namespace() -> str | None:
    """The inode of this process's pid namespace ('4026531836'), or None where /proc does not say."""
    try:
        link = os.readlink("/proc/self/ns/pid")  # 'pid:[4026531836]'
    except OSError:
        return None
    inode = link.rpartition("[")[2].rstrip("]")
    return inode if inode.isdigit() else None


PID_NAMESPACE = pid_namespace()


def owner_id(role: str) -> str:
    """Who runs a job: 'server:123@host#ab12cd34~4026531836' or 'worker:…' (~pid namespace, if known)."""
    ns = f"~{PID_NAMESPACE}" if PID_NAMESPACE else ""
    return f"{role}:{os.getpid()}@{socket.gethostname()}#{PROCESS_TOKEN}{ns}"


def owner_is_dead(owner: str | None) -> bool:
    """True only when we can tell for sure (same host and pid namespace); others go by heartbeat.

    Accepts old owner ids without '~pidns' ('server:<pid>@<host>', '…#token'): judged by host alone.
    """
    if not owner or ":" not in owner or "@" not in owner:
        return owner is None
    try:
        pid_part, rest = owner.split(":", 1)[1].split("@", 1)
        host, _, tail = rest.partition("#")
        token, _, ns = tail.partition("~")
        pid = int(pid_part)
    except ValueError:
        return False
    if host != socket.gethostname():
        return False
    if ns and PID_NAMESPACE and ns != PID_NAMESPACE:
        return False  # same hostname, another container: its pid means nothing here
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
    repointed: list[str] = field(default_factory=list)  # sources whose pointers lagged behind the record


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
                pub = await publications.get(conn, source)
                served = (f"run {pub.run_id} (published {pub.published_at}) is served" if pub
                          else "nothing of this source is published")
                await health_errors.raise_error(
                    conn, code="sync_interrupted", source=source,
                    message=f"job {job.id}: {LOST} (owner {job.owner}); {served} - trigger the sync again",
                )
        failed.append(job.id)
        log.warning("job %s failed by recovery: %s (owner %s, heartbeat %s)", job.id, LOST, job.owner,
                    job.heartbeat_at)
        for source in job.sources:
            await _repair(instance, source)
    return failed


async def _repair(instance: Instance, source: str) -> None:
    """After failing a dead job: pointers follow the record, and the recorded run's tables are registered."""
    try:
        done = await reconcile_source(instance, source, remove_unrecorded=False)
        if done is None or done.problem:
            return
        async with instance.control.read() as conn:
            pub = await publications.get(conn, source)
        if pub is None:
            return
        from agnes.services.published import published_tables  # services import jobs: keep it lazy
        from agnes.services.sources import register_published_tables

        tables = await asyncio.to_thread(published_tables, instance.settings.extracts_dir, source)
        if tables:
            await register_published_tables(instance, source, list(tables.values()))
    except Exception:  # the next sync repairs it too; never let one source stop the sweep
        log.exception("recovery: could not reconcile source %s with its recorded publication", source)


async def reconcile_source(instance: Instance, source: str, *,
                           remove_unrecorded: bool) -> publish.Reconciled | None:
    """Make `source`'s folder agree with the control plane; None when a live sync holds it (it will)."""
    extracts = instance.settings.extracts_dir
    with publish.sync_lock_nowait(extracts, source) as free:
        if not free:
            return None
        return await align_locked(instance, source, remove_unrecorded=remove_unrecorded)


async def align_locked(instance: Instance, source: str, *, remove_unrecorded: bool = False) -> publish.Reconciled:
    """`reconcile_source` for a caller that holds the source's sync lock (a sync, before it starts)."""
    async with instance.control.read() as conn:
        pub = await publications.get(conn, source)
    done = await asyncio.to_thread(publish.reconcile, instance.settings.extracts_dir, source,
                                   pub.run_id if pub else None, pub.previous_run_id if pub else None,
                                   remove_unrecorded=remove_unrecorded)
    if done.repointed:
        log.warning("source %s: current/previous re-pointed at the recorded run %s (a sync was killed after "
                    "recording it)", source, pub.run_id if pub else None)
    if done.removed:
        log.warning("source %s: removed %d unrecorded run(s) a killed sync left: %s", source, len(done.removed),
                    ", ".join(p.name for p in done.removed))
    if done.problem:
        log.error("source %s: %s", source, done.problem)
    return done


async def reconcile_all(instance: Instance, *, remove_unrecorded: bool) -> list[publish.Reconciled]:
    """Every source folder on disk and every recorded source; sources a live sync holds are skipped."""
    root = instance.settings.extracts_dir
    async with instance.control.read() as conn:
        names = {p.source for p in await publications.all_sources(conn)}
    if root.is_dir():
        names |= {e.name for e in root.iterdir()
                  if e.is_dir() and not e.is_symlink() and publish.SOURCE_RE.match(e.name)
                  and e.name not in publish.RESERVED_SOURCES}
    done = []
    for source in sorted(names):
        try:
            result = await reconcile_source(instance, source, remove_unrecorded=remove_unrecorded)
        except Exception:
            log.exception("recovery: could not reconcile source %s", source)
            continue
        if result is not None:
            done.append(result)
    return done


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
    """The start-up sequence: fail dead jobs, clean leftovers, align pointers with the record, re-enqueue."""
    report = RecoveryReport(failed=await fail_dead_jobs(instance, stale_after=stale_after))
    if clean:
        removed = await asyncio.to_thread(cleanup_leftovers, instance.settings.extracts_dir)
        report.cleaned = [str(p) for p in removed]
        from agnes.services.source_files import cleanup_leftovers as source_leftovers  # services import jobs: lazy

        report.cleaned += [str(p) for p in await source_leftovers(instance)]  # deleted sources, killed uploads
    for done in await reconcile_all(instance, remove_unrecorded=clean):
        report.cleaned.extend(str(p) for p in done.removed or [])
        if done.repointed:
            report.repointed.append(done.source)
    if requeue_queued:
        report.requeued = await requeue(instance)
    if report.failed or report.requeued or report.cleaned or report.repointed:
        log.info("job recovery: failed %s, re-enqueued %s, cleaned %d leftover(s), re-pointed %s", report.failed,
                 report.requeued, len(report.cleaned), report.repointed)
    return report
