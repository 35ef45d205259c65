"""One JobQueue interface, two implementations.

- InProcessQueue (default, no REDIS_URL): asyncio tasks inside the server,
  at most `sync.concurrency` at once. The queue itself is memory only; the
  job rows are the truth, so queued jobs are re-enqueued at the next start.
- ArqQueue (REDIS_URL set): hands the job id to arq; `agnes worker` processes
  run it. arq is maintenance-only upstream, so nothing outside this module
  and worker.py knows it exists. Only plain ints cross Redis (pickle).

Both run the same `run_sync_job` against the same job rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Protocol

from agnes.errors import AgnesError

if TYPE_CHECKING:
    from arq.connections import ArqRedis

    from agnes.services.instance import Instance

log = logging.getLogger("agnes.jobs")
ARQ_FUNCTION = "run_job"


def arq_job_id(job_id: int) -> str:
    return f"agnes-job-{job_id}"


class JobQueue(Protocol):
    kind: str  # 'inprocess' | 'arq'

    async def start(self) -> None: ...

    async def enqueue(self, job_id: int) -> None: ...

    async def close(self) -> None: ...


class InProcessQueue:
    """Jobs as asyncio tasks of this process; `close()` cancels them (they end `cancelled`)."""

    kind = "inprocess"

    def __init__(self, instance: Instance, *, concurrency: int, owner: str) -> None:
        self.instance, self.owner = instance, owner
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._closed = False

    async def start(self) -> None:
        self._closed = False

    async def enqueue(self, job_id: int) -> None:
        if self._closed:
            raise AgnesError("queue_unavailable", "The server is shutting down; the job stays queued and runs "
                             "after the next start.", hint="Nothing to do: after the restart follow the job with "
                                  f"GET /api/sync/jobs/{job_id}.")
        if job_id in self._tasks and not self._tasks[job_id].done():
            return  # already waiting or running here
        self._tasks[job_id] = asyncio.create_task(self._run(job_id), name=f"agnes-job-{job_id}")

    async def _run(self, job_id: int) -> None:
        from agnes.jobs.sync import run_sync_job

        try:
            async with self._slots:
                await run_sync_job(self.instance, job_id, owner=self.owner)
        except asyncio.CancelledError:
            raise
        except Exception:  # run_sync_job records its own failures; this is the last resort
            log.exception("job %s crashed", job_id)
        finally:
            self._tasks.pop(job_id, None)

    @property
    def pending(self) -> int:
        return sum(not t.done() for t in self._tasks.values())

    async def close(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109 - shutdown budget
        """Cancel every job task; running ones record `cancelled` before they end."""
        self._closed = True
        tasks = [t for t in self._tasks.values() if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=timeout)
            if pending:
                log.warning("%d job task(s) did not stop within %ss", len(pending), timeout)


class ArqQueue:
    """Enqueue to Redis for `agnes worker`; `_job_id` dedupes while a job is queued."""

    kind = "arq"

    def __init__(self, redis_url: str | None = None, *, pool: ArqRedis | None = None) -> None:
        self.redis_url = redis_url
        self._pool = pool
        self._own_pool = pool is None

    async def start(self) -> None:
        """Connect now if Redis answers; if not, the server still starts and enqueue retries."""
        try:
            await self._connect()
        except AgnesError as exc:
            log.warning("%s; jobs are refused until Redis answers", exc.message)

    async def _connect(self) -> ArqRedis:
        if self._pool is not None:
            return self._pool
        from arq import create_pool
        from arq.connections import RedisSettings

        assert self.redis_url
        try:
            settings = RedisSettings.from_dsn(self.redis_url)
            settings.conn_retries = 1
            self._pool = await create_pool(settings)
        except Exception as exc:
            raise _unavailable(exc) from exc
        return self._pool

    async def enqueue(self, job_id: int) -> None:
        pool = await self._connect()
        try:
            await pool.enqueue_job(ARQ_FUNCTION, int(job_id), _job_id=arq_job_id(job_id))
        except Exception as exc:
            raise _unavailable(exc) from exc

    async def worker_seen(self) -> bool:
        """Whether an `agnes worker` on this Redis refreshed arq's health key lately (the key expires
        HEALTH_SECONDS + 1 s after a worker's last report; a worker that stops deletes it)."""
        from arq.constants import default_queue_name, health_check_key_suffix

        pool = await self._connect()
        try:
            return bool(await pool.exists(default_queue_name + health_check_key_suffix))
        except Exception as exc:
            raise _unavailable(exc) from exc

    async def close(self) -> None:
        if self._pool is not None and self._own_pool:
            with contextlib.suppress(Exception):
                await self._pool.aclose(close_connection_pool=True)
        self._pool = None


def _unavailable(exc: Exception) -> AgnesError:
    return AgnesError("queue_unavailable", f"The job queue (Redis, REDIS_URL) cannot be reached: "
                      f"{type(exc).__name__}: {str(exc)[:200]}")


def make_queue(instance: Instance, *, owner: str) -> JobQueue:
    """arq when REDIS_URL is set, else in-process."""
    url = instance.settings.jobs.redis_url
    if url:
        return ArqQueue(url)
    return InProcessQueue(instance, concurrency=instance.settings.sync.concurrency, owner=owner)
