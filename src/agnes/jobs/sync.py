"""THE sync job: `run_sync_job(instance, job_id, owner=...)`, the same in the server and in arq workers.

Per source: run the connector into a fresh staging folder, keep the previous
data of tables that failed (carry_over.py), validate the folder against the
contract, publish it with an atomic pointer switch, then - in one control-plane
transaction - bump the publication counter, stamp the source's publication
row and settle its health errors. Anything short of a valid extract discards
the staging folder: the previous run keeps serving and the failure is on the
job row and in /api/health, never only in a log.

Why a per-source file lock: two jobs may cover one source (a table-subset sync
and a full one); serialised, each carries over from the run the other just
published instead of silently reverting it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from contract_tests.validator import validate_extract

from agnes.control import health_errors, publications
from agnes.control import jobs as jobs_repo
from agnes.engine.inbox import READY, InboxError, give_back, reject, take_run
from agnes.engine.publish import (
    SYNC_LOCK,
    PublishError,
    discard_run,
    discard_staging,
    install_run,
    new_staging_dir,
    point_at,
)
from agnes.errors import AgnesError
from agnes.extract.names import TABLE_NAME_RE
from agnes.extract.runner import RunResult, run_connector
from agnes.jobs.carry_over import CarryOverError, carry_over
from agnes.jobs.faults import kill_point
from agnes.jobs.recovery import align_locked
from agnes.jobs.runlog import JobRun
from agnes.services.instance import Instance

log = logging.getLogger("agnes.jobs")
SYNC_CODES = ("sync_failed", "extract_invalid", "sync_interrupted")
STDERR_LINES = 60  # connector stderr lines copied into the job log


@dataclass(frozen=True)
class SourceOutcome:
    source: str
    status: str  # published | partial | failed | cancelled | skipped
    error: str | None = None


async def run_sync_job(instance: Instance, job_id: int, *, owner: str) -> str | None:
    """Run job `job_id` if it is still queued; return its final status (None: not ours to run)."""
    async with instance.control.transaction() as conn:
        claimed = await jobs_repo.claim(conn, job_id, owner)
        job = await jobs_repo.get(conn, job_id)
    if not claimed or job is None:
        log.info("job %s not run by %s: it is %s", job_id, owner, job.status if job else "gone")
        return None
    async with JobRun(instance.control, job_id, owner) as run:
        run.say(f"job {job_id} started by {owner}: sources {', '.join(job.sources)}"
                + (f", tables {', '.join(job.tables)}" if job.tables else ""))
        outcomes: list[SourceOutcome] = []
        try:
            for source in job.sources:
                if run.cancel.is_set():
                    outcomes.append(SourceOutcome(source, "cancelled", "cancelled before it started"))
                    continue
                try:
                    outcomes.append(await _sync_source(instance, run, source, job.tables))
                except (asyncio.CancelledError, KeyboardInterrupt):
                    raise
                except Exception as exc:  # one source's bug must not hide the other sources' outcomes
                    log.exception("job %s: source %s failed unexpectedly", job_id, source)
                    message = f"internal error: {type(exc).__name__}: {exc}"
                    outcomes.append(await _fail(instance, run, source, "sync_failed", message))
        except asyncio.CancelledError:
            run.say("the process running this job is shutting down: stopped; trigger the sync again")
            await asyncio.shield(_finish(instance, run, "cancelled", "stopped: the server or worker running it "
                                         "shut down; the previous data keeps serving - trigger the sync again",
                                         outcomes))
            raise
        except Exception as exc:
            log.exception("job %s failed unexpectedly", job_id)
            run.say(f"internal error: {type(exc).__name__}: {exc}")
            await _finish(instance, run, "failed", f"internal error: {type(exc).__name__}: {exc}", outcomes)
            return "failed"
        status, error = _verdict(outcomes, run)
        run.say(f"job {job_id} {status}" + (f": {error}" if error else ""))
        await _finish(instance, run, status, error, outcomes)
        return status


def _verdict(outcomes: list[SourceOutcome], run: JobRun) -> tuple[str, str | None]:
    ran = [o for o in outcomes if o.status != "skipped"]
    errors = "; ".join(f"{o.source}: {o.error}" for o in (ran or outcomes) if o.error) or None
    if run.cancel.is_set() and any(o.status == "cancelled" for o in outcomes):
        return "cancelled", errors
    if not ran:
        return "failed", errors or "nothing to sync"
    if all(o.status == "published" for o in ran):
        return "succeeded", errors
    if any(o.status in ("published", "partial") for o in ran):
        return "partial", errors
    return "failed", errors


# SourceOutcome.status -> job_sources.status (a source's own status in GET /api/admin/sources)
_SOURCE_STATUS = {"published": "succeeded", "partial": "partial", "failed": "failed", "cancelled": "cancelled",
                  "skipped": "skipped"}


async def _finish(instance: Instance, run: JobRun, status: str, error: str | None,
                  outcomes: list[SourceOutcome] | None = None) -> None:
    if run.lost:
        return  # the recovery sweep already failed this job; its row is not ours any more
    async with instance.control.transaction() as conn:
        await jobs_repo.settle_pending(conn, run.job_id, None, "skipped", f"not published: the job {status}")
        done = await jobs_repo.finish(conn, run.job_id, run.owner, status=status, error=_clip(error),
                                      log_tail=run.tail)
        for outcome in (outcomes or []) if done else []:  # sources it never reached show the job's status
            await jobs_repo.set_source(conn, run.job_id, outcome.source, _SOURCE_STATUS.get(outcome.status, "failed"),
                                       _clip(outcome.error))
    if not done:
        log.warning("job %s: could not record %s (it is no longer running as %s)", run.job_id, status, run.owner)


async def _run_spec(instance: Instance, run: JobRun, source: str, tables: list[str] | None) -> Any:
    """The source's RunSpec. A type that extracts only registered tables discovers them at its first
    full sync (once: registry.discover_once); a scoped sync (`tables`) never discovers."""
    from agnes.services import sources as sources_service  # services own the source types
    from agnes.services.registry import discover_once

    spec = await sources_service.connector_run_spec(instance, source, tables)
    if spec.extracts_all or tables:
        return spec
    outcome = await discover_once(instance, source)
    if outcome is not None:
        if outcome.error:
            raise AgnesError("sync_failed", f"discovery failed: {outcome.error}")
        run.say(f"{source}: first sync: discovered and registered {len(outcome.registered)} table(s)"
                + (f", {len(outcome.invalid)} invalid" if outcome.invalid else ""))
        spec = await sources_service.connector_run_spec(instance, source, tables)
    if not spec.tables:
        raise AgnesError("sync_failed", "no table of this source is registered, so there is nothing to sync",
                         hint=f"Register tables with POST /api/admin/discover-and-register?source={source}, then "
                              "trigger the sync again")
    return spec


async def _sync_source(instance: Instance, run: JobRun, source: str, tables: list[str] | None) -> SourceOutcome:
    try:
        spec = await _run_spec(instance, run, source, tables)
    except AgnesError as exc:
        if exc.code == "source_not_found":  # deleted after the job was queued: nothing left to sync or report
            run.say(f"{source}: the source was deleted; skipped")
            return SourceOutcome(source, "skipped", "the source was deleted before it was synced")
        return await _fail(instance, run, source, "sync_failed", f"{exc.message} ({exc.hint})")
    inbox = instance.settings.inbox_dir / source
    if spec.connector is None and not (inbox / READY).is_file():
        run.say(f"{source}: a {spec.type} source has no connector to run (its runs arrive in "
                f"inbox/{source}/); skipped")
        return SourceOutcome(source, "skipped", f"a {spec.type} source is published from inbox/{source}/, not synced")
    extracts = instance.settings.extracts_dir
    async with _source_lock(extracts, source, run) as locked:
        if not locked:
            return SourceOutcome(source, "cancelled", "cancelled while waiting for another sync of this source")
        # The run the control plane records is the previous one (a pointer may lag after a kill: fix it now).
        previous = (await align_locked(instance, source)).run_path
        staging = new_staging_dir(extracts, source)
        taken = False  # an inbox run in staging goes back to inbox/<source>/ unless it is published
        refusal: str | None = f"Job {run.job_id} failed before it could publish this run (see its error and log_tail)."
        try:
            async with instance.control.transaction() as conn:
                for table in tables or []:
                    await jobs_repo.set_table(conn, run.job_id, source, table, "pending")
            if spec.connector is None:  # Tier B: the producer already wrote the run into the inbox
                result = await asyncio.to_thread(_take_inbox_run, inbox, staging)
                taken = result.ok
                run.say(f"{source}: took the run from inbox/{source}/" if result.ok else f"{source}: {result.error}")
            else:
                run.say(f"{source}: running connector {spec.connector.name!r}"
                        + (f" for {len(spec.tables)} table(s)" if spec.tables else ""))

                async def on_event(event: dict[str, Any]) -> None:
                    await _on_event(instance, run, source, event)

                from agnes.services.source_files import connector_inputs

                async with connector_inputs(spec) as inputs:  # e.g. csv: a snapshot of the staged files
                    result = await run_connector(
                        spec.connector, staging, config=inputs.config, secrets=inputs.secrets_env,
                        timeout=instance.settings.sync.timeout_seconds, on_event=on_event, cancel=run.cancel,
                        tables=inputs.tables, source_name=source,
                        state_dir=inputs.state_dir, previous_dir=previous,
                    )
            for line in [*result.log_tail[-20:], *result.stderr_tail[-STDERR_LINES:]]:
                run.say(line, prefix=source)
            if result.status == "cancelled":
                await _settle(instance, run, source, "skipped", "not published: the job was cancelled")
                return SourceOutcome(source, "cancelled", "cancelled while the connector ran")
            if not result.ok:
                error = result.error or "the connector failed"
                await _settle(instance, run, source, "failed", f"not published: {error}")
                if spec.connector:
                    return await _fail(instance, run, source, "sync_failed", error)
                return await _fail(instance, run, source, "extract_invalid", error)  # an inbox hand-over refused
            try:
                carried = await asyncio.to_thread(carry_over, staging, previous, set(result.tables_failed), tables)
            except CarryOverError as exc:
                message = f"{exc}; the whole previous run keeps serving"
                refusal = f"Not published: {message}."
                return await _fail(instance, run, source, "sync_failed", message)
            report = await asyncio.to_thread(validate_extract, staging, source_name=source)
            if not report.ok:
                refusal = f"inbox/{source}/ was not published: it breaks the extract contract.\n\n{report.to_text()}"
                return await _invalid(instance, run, source, report)
            if run.lost:
                refusal = None  # not judged: READY again, the next inbox check retries it
                return SourceOutcome(source, "cancelled", "the job was taken over by recovery; not published")
            kill_point("validated")
            # A valid run is installed, recorded and pointed at to the end even if we are cancelled meanwhile.
            step = asyncio.ensure_future(_publish(instance, run, source, staging, report, result.tables_failed,
                                                  {c.table: c.extracted_at for c in carried}))
            try:
                failed = await asyncio.shield(step)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await step
                raise
        except asyncio.CancelledError:
            refusal = None  # stopped, not judged: READY again, the next inbox check retries it
            raise
        finally:
            if taken and staging.exists():
                _give_back_inbox_run(inbox, staging, refusal)
            if staging.exists():  # not published (a published staging folder has become runs/<id>)
                discard_staging(staging)
    if failed:
        return SourceOutcome(source, "partial", f"table(s) {', '.join(failed)} failed (previous data kept "
                             "where there was any)")
    return SourceOutcome(source, "published")


async def _publish(instance: Instance, run: JobRun, source: str, staging: Path, report: Any,
                   failed: dict[str, dict[str, Any]], carried: dict[str, str | None]) -> list[str]:
    """Install the run, record it (THE commit point: one transaction), point `current` at it, register its tables.

    Returns the tables that failed. A kill before the record leaves an unrecorded
    runs/<id> that nothing serves (start-up recovery removes it); a kill after it
    leaves the run served (serving follows the record) with lagging pointers and
    maybe unregistered tables, which recovery of the dead job repairs
    (jobs/recovery.py). AGNES_FAULT_KILL_AT (jobs/faults.py) kills here in tests.
    """
    from agnes.services import sources as sources_service

    extracts = instance.settings.extracts_dir
    run_id = (await asyncio.to_thread(install_run, extracts, source, staging)).name
    kill_point("installed")
    stamps = [t.extracted_at for t in report.tables if t.extracted_at]
    extracted_at = _iso(max(stamps)) if stamps else None
    try:
        async with instance.control.transaction() as conn:
            before = await publications.get(conn, source)
            previous_run_id = before.run_id if before is not None else None
            pub = await publications.record(conn, source=source, run_id=run_id, previous_run_id=previous_run_id,
                                            extracted_at=extracted_at)
            requested = set(await _job_tables(conn, run.job_id, source))
            for info in report.tables:
                if info.name in failed:
                    kept = f"; previous data kept (extracted_at {carried[info.name]})" if info.name in carried else ""
                    await jobs_repo.set_table(conn, run.job_id, source, info.name, "failed",
                                              error=_clip(_table_error(failed[info.name]) + kept))
                elif info.name not in carried:
                    await jobs_repo.set_table(conn, run.job_id, source, info.name, "succeeded", rows=info.rows)
            missing = sorted(requested - {t.name for t in report.tables} - set(failed))
            for name in missing:
                await jobs_repo.set_table(conn, run.job_id, source, name, "failed",
                                          error="not in the published extract: the connector did not write it")
            for code in SYNC_CODES:
                await health_errors.resolve(conn, source=source, code=code)
            bad = sorted({*failed, *missing})
            lost = [t for t in bad if t not in carried]
            if bad:
                await health_errors.raise_error(conn, code="sync_failed", source=source, message=_clip(
                    f"job {run.job_id}: table(s) {', '.join(bad)} of {source} failed"
                    + (f"; no previous data for {', '.join(lost)}" if lost else "; their previous data keeps serving")))
    except BaseException:
        # Not recorded: never served, so it goes. Asked again because a cancellation can land after COMMIT.
        async with instance.control.read() as conn:
            after = await publications.get(conn, source)
        if after is None or after.run_id != run_id:
            await asyncio.to_thread(discard_run, extracts, source, run_id)
        raise
    kill_point("recorded")
    try:
        await asyncio.to_thread(point_at, extracts, source, run_id, previous_run_id)
    except (OSError, PublishError) as exc:  # served anyway (serving follows the record); recovery re-points
        log.exception("job %s: pointing %s/current at run %s failed", run.job_id, source, run_id)
        run.say(f"{source}: warning: the run is published but pointing current at it failed: {exc}")
    kill_point("switched")
    run.say(f"{source}: published run {run_id} (publication serial {pub.serial}, {len(report.tables)} table(s)"
            + (f", {len(carried)} kept from the previous run" if carried else "") + ")")
    try:
        await sources_service.register_published_tables(instance, source, report.tables)
    except Exception as exc:  # the data is published; only the registry lags behind
        log.exception("job %s: registering the tables of %s failed", run.job_id, source)
        run.say(f"{source}: warning: registering the published tables failed: {exc}")
    return bad


def _take_inbox_run(inbox: Path, staging: Path) -> RunResult:
    """Take the run; one that cannot be taken is refused at once (REJECTED, READY removed, files put
    back), so the inbox watcher does not queue a failing job for it every few seconds."""
    try:
        take_run(inbox, staging)
    except (InboxError, OSError) as exc:
        error = f"could not take the run from inbox/{inbox.name}/: {exc}"
        try:
            reject(inbox, f"inbox/{inbox.name}/ was not published: {exc}", staging)
        except OSError as why:
            log.exception("inbox/%s: writing REJECTED failed", inbox.name)
            error += f" (and writing inbox/{inbox.name}/REJECTED failed: {why})"
        else:
            error += f"; the reason is in inbox/{inbox.name}/REJECTED"
        return RunResult("failed", error=error)
    return RunResult("succeeded")


def _give_back_inbox_run(inbox: Path, staging: Path, refusal: str | None) -> None:
    """An inbox run that was taken but not published goes back for inspection (REJECTED) or, when the
    sync stopped without judging it (refusal None), back with READY to be retried."""
    try:
        give_back(inbox, staging, refusal)
    except OSError:
        log.exception("inbox/%s: putting the unpublished run back failed", inbox.name)


async def _job_tables(conn: Any, job_id: int, source: str) -> list[str]:
    tables = await jobs_repo.tables_of(conn, [job_id])
    return [t.table_name for t in tables.get(job_id, []) if t.source == source]


async def _invalid(instance: Instance, run: JobRun, source: str, report: Any) -> SourceOutcome:
    problems = [f"[{v.code}]" + (f" {v.table}:" if v.table else "") + f" {v.message} (fix: {v.fix})"
                for v in report.violations]
    for line in problems:
        run.say(f"{source}: contract violation {line}")
    async with instance.control.transaction() as conn:
        for v in report.violations:
            if v.table and TABLE_NAME_RE.match(v.table):
                await jobs_repo.set_table(conn, run.job_id, source, v.table, "failed",
                                          error=_clip(f"contract violation [{v.code}] {v.message}"))
        await jobs_repo.settle_pending(conn, run.job_id, source, "failed", "not published: the extract is invalid")
    message = (f"the extract broke the contract, so it was not published ({len(problems)} violation(s)): "
               + "; ".join(problems))
    return await _fail(instance, run, source, "extract_invalid", message)


async def _fail(instance: Instance, run: JobRun, source: str, code: str, message: str) -> SourceOutcome:
    """Record a source that published nothing: one open health error per source and code family."""
    run.say(f"{source}: failed: {message}")
    async with instance.control.transaction() as conn:
        for old in SYNC_CODES:
            await health_errors.resolve(conn, source=source, code=old)
        await health_errors.raise_error(conn, code=code, source=source, message=_clip(
            f"job {run.job_id}: {message}; the previous data keeps serving"))
    return SourceOutcome(source, "failed", _clip(message))


async def _settle(instance: Instance, run: JobRun, source: str, status: str, error: str) -> None:
    async with instance.control.transaction() as conn:
        await jobs_repo.settle_pending(conn, run.job_id, source, status, _clip(error))


async def _on_event(instance: Instance, run: JobRun, source: str, event: dict[str, Any]) -> None:
    """Connector progress -> job_tables rows as they happen (input is untrusted: checked and clipped)."""
    kill_point("connector")
    kind, table = event.get("event"), event.get("table")
    if not isinstance(table, str) or not TABLE_NAME_RE.match(table):
        run.say(f"{source}: event {str(kind)[:40]}", prefix=source)
        return
    async with instance.control.transaction() as conn:
        if kind == "table_started":
            await jobs_repo.set_table(conn, run.job_id, source, table, "pending")
            run.say(f"table {table} started", prefix=source)
        elif kind == "table_done":
            rows, size = _int(event.get("rows")), _int(event.get("bytes"))  # 'succeeded' once published
            await jobs_repo.set_table(conn, run.job_id, source, table, "pending", rows=rows, size=size)
            run.say(f"table {table} done: {rows} rows, {size} bytes", prefix=source)
        elif kind == "table_failed":
            error = _table_error(event)
            await jobs_repo.set_table(conn, run.job_id, source, table, "failed", error=_clip(error))
            run.say(f"table {table} failed: {error}", prefix=source)
        elif kind == "table_warning":  # e.g. values that do not parse under a column's declared type
            message = _clip(str(event.get("message") or event), 1000) or ""
            kept = await jobs_repo.add_warning(conn, run.job_id, source, table, message)
            run.say(f"table {table} warning: {message}" + ("" if kept else " (not stored: too many warnings)"),
                    prefix=source)


@contextlib.asynccontextmanager
async def _source_lock(extracts: Path, source: str, run: JobRun) -> AsyncIterator[bool]:
    """Exclusive flock on extracts/<source>/.sync.lock (any process); yields False if cancelled while waiting."""
    folder = extracts / source
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / SYNC_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        waiting = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if run.cancel.is_set():
                    yield False
                    return
                if not waiting:
                    waiting = True
                    run.say(f"{source}: waiting for another sync of this source to finish")
                await asyncio.sleep(0.25)
        yield True
    finally:
        os.close(fd)


def _table_error(event: dict[str, Any]) -> str:
    error = str(event.get("error") or "the connector reported the table failed")
    file = event.get("file")
    return f"{error} (file {file})" if isinstance(file, str) and file and file not in error else error


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _iso(value: str) -> str:
    """Validator timestamps are naive UTC ISO strings; store them like every control-plane time."""
    try:
        return datetime.fromisoformat(value).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    except ValueError:
        return value


def _clip(text: str | None, limit: int = 4000) -> str | None:
    return text if text is None or len(text) <= limit else text[: limit - 1] + "…"
