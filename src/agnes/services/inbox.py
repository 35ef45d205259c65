"""Tier B pick-up: turn `inbox/<name>/READY` into a sync job of an external source.

The server scans the inbox (both queue modes); the job itself moves the run
into staging, validates it against the contract and publishes it exactly
like a connector's output, so the job row, health errors and the serving
pick-up are the same for every tier.
"""

from __future__ import annotations

import asyncio
import logging

from agnes.control import health_errors
from agnes.control import sources as sources_repo
from agnes.engine.inbox import ready_sources, reject
from agnes.extract.names import source_name_problem
from agnes.services.instance import Instance
from agnes.services.sources import ensure_external_source
from agnes.services.sync import create_job, enqueue

log = logging.getLogger("agnes.inbox")


async def scan_inbox(instance: Instance) -> list[int]:
    """Queue one job per ready inbox folder; refuse folders that cannot be a source."""
    inbox = instance.settings.inbox_dir
    queued: list[int] = []
    for name in await asyncio.to_thread(ready_sources, inbox):
        problem = source_name_problem(name)
        async with instance.control.read() as conn:
            row = await sources_repo.get(conn, name)
        if problem is None and (inbox / name).is_symlink():
            problem = (f"inbox/{name} is a symbolic link; the producer must write its run into a real folder "
                       f"inbox/{name}/")
        if problem is None and row is not None and row["type"] != "external":
            problem = (f"a {row['type']} source named {name!r} already exists; a Tier B producer needs its own "
                       "name (rename the inbox folder)")
        if problem is not None:
            await _refuse(instance, name, problem)
            continue
        await ensure_external_source(instance, name)
        async with instance.control.transaction() as conn:
            job, created = await create_job(conn, sources=[name], tables=None, trigger="inbox", requested_by=None)
        if created:
            await enqueue(instance, job)
            log.info("inbox: run of %s queued as job %s", name, job.id)
            queued.append(job.id)
    return queued


async def _refuse(instance: Instance, name: str, problem: str) -> None:
    message = f"inbox/{name}/ was not published: {problem}"
    await asyncio.to_thread(reject, instance.settings.inbox_dir / name, message)
    async with instance.control.transaction() as conn:
        await health_errors.raise_error(conn, code="extract_invalid", source=None, message=message)
    log.warning(message)


async def inbox_loop(instance: Instance, interval: float = 2.0) -> None:
    """The server's inbox watcher; a failing scan is logged and retried, never fatal."""
    while True:
        try:
            await scan_inbox(instance)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 — keep watching; the next tick retries
            log.exception("inbox scan failed")
        await asyncio.sleep(interval)
