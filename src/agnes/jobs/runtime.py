"""The server's side of jobs: the queue, recovery at start, and one background loop.

`start_job_runtime(instance)` is called by the app lifespan after
`start_instance`; `runtime.stop()` before `instance.close()`.

- Embedded (no REDIS_URL): jobs run in this process. At start, jobs of dead
  owners are failed, staging leftovers removed and queued jobs re-enqueued;
  the loop evaluates cron schedules (the ONLY place in embedded mode) and
  sweeps stale heartbeats. On stop, running jobs are cancelled and end
  `cancelled` - never left running.
- arq (REDIS_URL): workers own recovery and schedules; the server only
  enqueues, and its loop still sweeps stale heartbeats so a job whose every
  worker died is failed even while no worker runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from agnes.jobs.queue import JobQueue, make_queue
from agnes.jobs.recovery import fail_dead_jobs, owner_id, recover
from agnes.services.instance import Instance
from agnes.services.schedules import SCHEDULE_TICK_SECONDS, enqueue_due_schedules

log = logging.getLogger("agnes.jobs")
SWEEP_SECONDS = 15.0


@dataclass
class JobRuntime:
    instance: Instance
    queue: JobQueue
    tick: float = SCHEDULE_TICK_SECONDS
    _loop: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def embedded(self) -> bool:
        return self.queue.kind == "inprocess"

    def start_loop(self) -> None:
        self._loop = asyncio.create_task(self._background(), name="agnes-jobs-loop")

    async def _background(self) -> None:
        since_sweep = 0.0
        while True:
            try:
                if self.embedded:
                    await enqueue_due_schedules(self.instance)
                if since_sweep >= SWEEP_SECONDS or self.tick >= SWEEP_SECONDS:
                    since_sweep = 0.0
                    await fail_dead_jobs(self.instance)
            except asyncio.CancelledError:
                raise
            except Exception:  # keep the loop alive; the next tick retries
                log.exception("job background loop failed; retrying in %ss", self.tick)
            await asyncio.sleep(self.tick)
            since_sweep += self.tick

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
            self._loop = None
        await self.queue.close()
        self.instance.jobs = None


async def start_job_runtime(instance: Instance, *, background: bool = True,
                            tick: float = SCHEDULE_TICK_SECONDS) -> JobRuntime:
    """Open the queue and recover; `background=False` leaves the loop to the caller (tests)."""
    queue = make_queue(instance, owner=owner_id("server"))
    await queue.start()
    instance.jobs = queue
    runtime = JobRuntime(instance, queue, tick=tick)
    try:
        if runtime.embedded:
            await recover(instance, requeue_queued=True, clean=True)
        else:
            await fail_dead_jobs(instance)
    except BaseException:
        await runtime.stop()
        raise
    if background:
        runtime.start_loop()
    log.info("jobs run %s; cron schedules are evaluated %s (UTC)",
             "in this server process" if runtime.embedded else "by `agnes worker` (arq, REDIS_URL)",
             "here" if runtime.embedded else "by the worker's cron")
    return runtime
