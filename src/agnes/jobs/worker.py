"""`agnes worker`: the arq worker that runs sync jobs when REDIS_URL is set.

It opens the control plane (never the serving catalog: the server notices
new publications through the counter), runs `run_sync_job` for each job id
the server enqueued, and once a minute (arq cron, second 0, unique across
workers) sweeps dead jobs, re-enqueues queued jobs whose Redis entry was lost
and evaluates the per-source cron schedules - in arq mode this cron is the
ONLY place schedules run (UTC). At start it recovers like the server does in
embedded mode: dead jobs failed, staging leftovers removed, queued re-enqueued.

Health check: `agnes worker --check` (or `arq --check agnes.jobs.worker.WorkerSettings`)
exits 0 while a worker refreshed its sentinel key in the last HEALTH_SECONDS.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from typing import Any

from arq import Retry, Worker, cron, func
from arq.connections import RedisSettings
from arq.worker import async_check_health

from agnes.jobs.queue import ARQ_FUNCTION, ArqQueue
from agnes.jobs.recovery import fail_dead_jobs, owner_id, recover, requeue
from agnes.jobs.sync import run_sync_job
from agnes.services.instance import start_instance
from agnes.services.schedules import enqueue_due_schedules
from agnes.settings import Settings

log = logging.getLogger("agnes.worker")
JOB_TIMEOUT_SECONDS = 7 * 86400  # the connector timeout (per source) is the real bound
HEALTH_SECONDS = 30
REQUEUE_AFTER_SECONDS = 120


async def startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx.get("settings") or Settings.load()
    instance = await start_instance(settings, serve=False)
    instance.jobs = ArqQueue(pool=ctx["redis"])
    ctx["instance"], ctx["owner"] = instance, owner_id("worker")
    await recover(instance, requeue_queued=True, clean=True)
    log.info("agnes worker %s ready (data dir %s)", ctx["owner"], settings.data_dir)


async def shutdown(ctx: dict[str, Any]) -> None:
    instance = ctx.pop("instance", None)
    if instance is not None:
        await instance.close()


async def run_job(ctx: dict[str, Any], job_id: int) -> str | None:
    """The arq entry point; the job's own row records every outcome."""
    try:
        return await run_sync_job(ctx["instance"], int(job_id), owner=ctx["owner"])
    except sqlite3.OperationalError as exc:  # e.g. "database is locked" before the job was claimed
        if ctx.get("job_try", 1) < 3:
            log.warning("job %s: control plane busy (%s); retrying", job_id, exc)
            raise Retry(defer=5) from exc
        raise


async def tick(ctx: dict[str, Any]) -> None:
    """Every minute: recovery sweep, lost queue entries, due schedules."""
    instance = ctx["instance"]
    await fail_dead_jobs(instance)
    await requeue(instance, older_than=REQUEUE_AFTER_SECONDS)
    await enqueue_due_schedules(instance)


def redis_settings(url: str) -> RedisSettings:
    return RedisSettings.from_dsn(url)


def worker_settings(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `arq.Worker` (the same the WorkerSettings class declares)."""
    if not settings.jobs.redis_url:
        raise ValueError("REDIS_URL is not set")
    return {
        "functions": [func(run_job, name=ARQ_FUNCTION, timeout=JOB_TIMEOUT_SECONDS)],
        "cron_jobs": [cron(tick, name="agnes-tick", second=0, timeout=300)],
        "on_startup": startup,
        "on_shutdown": shutdown,
        "redis_settings": redis_settings(settings.jobs.redis_url),
        "max_jobs": settings.sync.concurrency + 1,  # + the cron tick
        "job_timeout": JOB_TIMEOUT_SECONDS,
        "keep_result": 3600,
        "health_check_interval": HEALTH_SECONDS,
        "ctx": {"settings": settings},
    }


class WorkerSettings:
    """For `arq agnes.jobs.worker.WorkerSettings`; settings come from the environment at import."""

    functions = [func(run_job, name=ARQ_FUNCTION, timeout=JOB_TIMEOUT_SECONDS)]
    cron_jobs = [cron(tick, name="agnes-tick", second=0, timeout=300)]
    on_startup = startup
    on_shutdown = shutdown
    redis_settings = redis_settings(os.environ.get("REDIS_URL") or "redis://localhost:6379")
    max_jobs = 3
    job_timeout = JOB_TIMEOUT_SECONDS
    keep_result = 3600
    health_check_interval = HEALTH_SECONDS


def run_worker(settings: Settings, *, burst: bool = False) -> None:
    """Run until SIGINT/SIGTERM (or, with burst, until the queue is empty); running jobs end `cancelled`."""
    Worker(**worker_settings(settings), burst=burst).run()


async def check_worker(settings: Settings) -> int:
    """0 when a worker on this Redis refreshed its health key recently, else 1."""
    assert settings.jobs.redis_url
    return await async_check_health(redis_settings(settings.jobs.redis_url), None, None)
