"""Per-source cron schedules: `enqueue_due_schedules(instance, now)`.

Where it runs - exactly ONE place per deployment:
- embedded mode (no REDIS_URL): a background task of the server (jobs/runtime.py),
  every SCHEDULE_TICK_SECONDS;
- arq mode (REDIS_URL set): the `agnes worker` cron job, once a minute at
  second 0 (arq's `unique` cron lets only one worker run each tick). The server
  does NOT evaluate schedules then.

Time zone: cron expressions are evaluated in UTC, always (five fields,
croniter syntax). Missed ticks (server down over night) collapse into one
run at the next evaluation, never a backlog. A tick is claimed with a
compare-and-set on `sources.last_scheduled_at`, so even two evaluators could
not enqueue it twice; a tick that finds the source already syncing advances
without a second job.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from croniter import croniter

from agnes.control import health_errors
from agnes.control import schedules as schedules_repo
from agnes.services.instance import Instance
from agnes.services.sync import create_job, enqueue

log = logging.getLogger("agnes.schedules")
SCHEDULE_TICK_SECONDS = 20.0


def _parse(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def due_tick(schedule: str, last: datetime, now: datetime) -> datetime | None:
    """The latest tick in (last, now], or None when none is due. ValueError for a bad expression."""
    if not croniter.is_valid(schedule):
        raise ValueError(schedule)
    if croniter(schedule, last).get_next(datetime) > now:
        return None
    return croniter(schedule, now + timedelta(seconds=1)).get_prev(datetime)


async def enqueue_due_schedules(instance: Instance, now: datetime | None = None) -> list[int]:
    """Create (and enqueue) a `schedule` job for every source whose cron tick is due; returns new job ids."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    async with instance.control.read() as conn:
        scheduled = await schedules_repo.scheduled(conn)
        open_errors = {(e.code, e.source) for e in await health_errors.open_errors(conn, limit=1000)}
    created: list[int] = []
    for src in scheduled:
        try:
            tick = due_tick(src.schedule.strip(), _parse(src.last_scheduled_at or src.updated_at), now)
        except (ValueError, KeyError):
            if ("schedule_invalid", src.name) not in open_errors:
                async with instance.control.transaction() as conn:
                    await health_errors.raise_error(
                        conn, code="schedule_invalid", source=src.name,
                        message=f"schedule {src.schedule!r} of source {src.name} is not a valid cron expression "
                                "(five fields, UTC, e.g. '0 3 * * *'); it does not run")
            continue
        if ("schedule_invalid", src.name) in open_errors:
            async with instance.control.transaction() as conn:
                await health_errors.resolve(conn, source=src.name, code="schedule_invalid")
        if tick is None:
            continue
        async with instance.control.transaction() as conn:
            if not await schedules_repo.advance(conn, src.name, seen=src.last_scheduled_at, tick=_iso(tick)):
                continue  # another evaluator took this tick
            job, new = await create_job(conn, sources=[src.name], tables=None, trigger="schedule", requested_by=None)
        if new:
            log.info("schedule %r of %s is due (tick %s): job %s", src.schedule, src.name, _iso(tick), job.id)
            try:
                await enqueue(instance, job)
            except Exception:
                log.exception("scheduled job %s could not be queued", job.id)
                continue
            created.append(job.id)
        else:
            log.info("schedule of %s is due but job %s already covers it", src.name, job.id)
    return created
