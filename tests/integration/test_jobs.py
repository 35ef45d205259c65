"""The job suite, run against both queues: in-process (no REDIS_URL) and arq on a real Redis.

Real connector subprocesses, real DuckDB/parquet files, the real control plane.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from contract_tests.validator import validate_extract

from agnes.control import jobs as jobs_repo
from agnes.control import publications
from agnes.engine.publish import current_run
from agnes.jobs import runlog
from agnes.jobs.recovery import LOST, fail_dead_jobs, owner_id
from agnes.jobs.worker import tick
from agnes.services import sync as sync_service
from agnes.settings import Settings
from tests.integration.jobs_support import (  # noqa: F401 - redis_url is a fixture
    MODES,
    Harness,
    eventually,
    exists,
    process_gone,
    redis_url,
)

pytestmark = [pytest.mark.redis,
              pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning")]  # inside arq


@pytest.fixture(params=MODES)
async def h(request: pytest.FixtureRequest, data_dir: Path) -> AsyncIterator[Harness]:
    url = request.getfixturevalue("redis_url") if request.param == "arq" else None
    harness = await Harness(request.param, data_dir, url).start()
    yield harness
    await harness.close()


def values(run: Path | None, table: str) -> list[int]:
    assert run is not None
    return [r[0] for r in duckdb.sql(f"SELECT v FROM '{run}/data/{table}.parquet'").fetchall()]


async def counter_and_row(h: Harness, source: str) -> tuple[int, publications.Publication | None]:
    async with h.instance.control.read() as conn:
        return await publications.counter(conn), await publications.get(conn, source)


async def test_sample_sync_publishes_and_bumps_the_counter(h: Harness) -> None:
    await h.add_source("sample", type="sample")
    job = await h.sync()
    assert job.status == "succeeded", job.log_tail
    assert {t.id: (t.status, t.rows) for t in job.tables} == {
        "sample.customers": ("succeeded", 2000), "sample.orders": ("succeeded", 10000),
        "sample.products": ("succeeded", 200)}
    assert all(t.bytes and t.bytes > 0 for t in job.tables)
    assert job.started_at and job.finished_at and "published run" in job.log_tail
    counter, row = await counter_and_row(h, "sample")
    run = current_run(h.settings.extracts_dir, "sample")
    assert counter == 1 and row is not None and row.serial == 1 and run is not None and row.run_id == run.name
    assert row.extracted_at and row.extracted_at.endswith("Z")
    assert validate_extract(run, source_name="sample").ok
    again = await h.sync("sample")
    counter, row = await counter_and_row(h, "sample")
    assert again.status == "succeeded" and counter == 2 and row is not None and row.serial == 2
    assert row.previous_run_id == run.name


async def test_one_job_per_request_and_overlaps_return_the_active_job(h: Harness) -> None:
    await h.add_source("one", tables=["a"], sleep=1.5)
    await h.add_source("two", tables=["a"])
    first = await h.trigger()
    assert first.created and first.sources == ["one", "two"]
    assert (await h.trigger()).job_id == first.job_id
    covered = await h.trigger("one", ["a"])
    assert covered.job_id == first.job_id and not covered.created
    await h.run(first.job_id)
    later = await h.trigger("one")
    assert later.created and later.job_id != first.job_id and later.sources == ["one"]
    await h.run(later.job_id)


async def test_csv_with_one_bad_file_is_partial(h: Harness) -> None:
    await h.add_source("files", type="csv")
    folder = h.settings.uploads_dir / "files"
    folder.mkdir(parents=True)
    (folder / "good.csv").write_text("id,name\n1,x\n2,y\n")
    (folder / "bad.csv").write_bytes(b"name,city\nJos\xe9,Z\xfcrich\n")
    job = await h.sync("files")
    assert job.status == "partial", job.log_tail
    tables = {t.id: t for t in job.tables}
    assert tables["files.good"].status == "succeeded" and tables["files.good"].rows == 2
    assert tables["files.bad"].status == "failed" and "bad.csv" in (tables["files.bad"].error or "")
    assert "bad" in (job.error or "")
    run = current_run(h.settings.extracts_dir, "files")
    assert run is not None and (run / "data" / "good.parquet").is_file() and not (run / "data" / "bad.parquet").exists()
    assert [(c, s) for c, s, _ in await h.health_errors()] == [("sync_failed", "files")]


async def test_a_failed_table_keeps_its_previous_data(h: Harness) -> None:
    await h.add_source("flex", version=1)
    assert (await h.sync("flex")).status == "succeeded"
    first = current_run(h.settings.extracts_dir, "flex")
    await h.set_options("flex", version=2, fail=["b"])
    job = await h.sync("flex")
    assert job.status == "partial"
    b = next(t for t in job.tables if t.id == "flex.b")
    assert b.status == "failed" and "exploded" in (b.error or "") and "previous data kept" in (b.error or "")
    run = current_run(h.settings.extracts_dir, "flex")
    assert run != first and values(run, "a") == [2, 2, 2] and values(run, "b") == [1, 1, 1]
    assert validate_extract(run, source_name="flex").ok
    con = duckdb.connect(str(run / "extract.duckdb"), read_only=True)
    stamps = dict(con.execute("SELECT table_name, extracted_at FROM _meta").fetchall())
    con.close()
    assert stamps["b"] < stamps["a"]  # freshness stays honest: b is as old as its data
    errors = await h.health_errors()
    assert errors[0][:2] == ("sync_failed", "flex") and "previous data keeps serving" in errors[0][2]
    # a table-subset sync keeps every other table too
    await h.set_options("flex", version=3)
    subset = await h.sync("flex", ["a"])
    run = current_run(h.settings.extracts_dir, "flex")
    assert subset.status == "succeeded" and [t.id for t in subset.tables] == ["flex.a"]
    assert values(run, "a") == [3, 3, 3] and values(run, "b") == [1, 1, 1]
    assert await h.health_errors() == []  # a successful sync resolves the source's errors


async def test_connector_crash_fails_and_the_previous_run_keeps_serving(h: Harness) -> None:
    await h.add_source("flex")
    await h.sync("flex")
    before = current_run(h.settings.extracts_dir, "flex")
    await h.set_options("flex", crash=True)
    job = await h.sync("flex")
    assert job.status == "failed"
    assert "exited with code 3" in (job.error or "") and "401 Unauthorized" in job.log_tail
    assert current_run(h.settings.extracts_dir, "flex") == before
    assert not [p for p in (h.settings.extracts_dir / "flex" / "staging").iterdir()]
    counter, _ = await counter_and_row(h, "flex")
    assert counter == 1
    [(code, source, message)] = await h.health_errors()
    assert (code, source) == ("sync_failed", "flex") and f"job {job.id}" in message


async def test_an_invalid_extract_is_reported_and_never_published(h: Harness) -> None:
    await h.add_source("flex")
    await h.sync("flex")
    before = current_run(h.settings.extracts_dir, "flex")
    await h.set_options("flex", invalid=True)
    job = await h.sync("flex")
    assert job.status == "failed"
    assert "broke the contract" in (job.error or "") and "ghost" in (job.error or "")
    assert "contract violation [" in job.log_tail
    ghost = next(t for t in job.tables if t.id == "flex.ghost")
    assert ghost.status == "failed" and "contract violation" in (ghost.error or "")
    assert current_run(h.settings.extracts_dir, "flex") == before
    assert [(c, s) for c, s, _ in await h.health_errors()] == [("extract_invalid", "flex")]
    await h.set_options("flex")
    assert (await h.sync("flex")).status == "succeeded"
    assert await h.health_errors() == []


async def test_cancel_a_queued_job(h: Harness) -> None:
    await h.add_source("slow", tables=["a"], sleep=30)
    await h.add_source("quick", tables=["a"])
    if h.mode == "inprocess":  # one job at a time: the second one waits in the queue
        await h.close()
        h.settings = Settings.load({**h.env, "AGNES_SYNC_CONCURRENCY": "1"})
        await h.start()
    blocker = await h.trigger("slow")
    if h.mode == "inprocess":
        await h.wait(blocker.job_id, ("running",))
    queued = await h.trigger("quick")
    cancelled = await sync_service.cancel_job(h.instance, None, queued.job_id)
    assert cancelled.status == "cancelled" and cancelled.finished_at
    await sync_service.cancel_job(h.instance, None, blocker.job_id)
    await h.run(blocker.job_id)
    assert (await h.job(queued.job_id)).status == "cancelled"  # a worker picking it up later does nothing
    assert current_run(h.settings.extracts_dir, "quick") is None


async def test_cancel_a_running_job_stops_the_connector(h: Harness, tmp_path: Path) -> None:
    await h.add_source("flex", version=1)
    await h.sync("flex")
    before = current_run(h.settings.extracts_dir, "flex")
    pid_file = tmp_path / "connector.pid"
    await h.set_options("flex", sleep=60, pid_file=str(pid_file))
    started = await h.trigger("flex")
    worker = asyncio.create_task(h.run_worker()) if h.mode == "arq" else None
    await h.wait(started.job_id, ("running",))
    await eventually(lambda: asyncio.to_thread(exists, pid_file), what="connector start")
    job = await sync_service.cancel_job(h.instance, None, started.job_id)
    assert job.status == "running" and job.cancel_requested
    job = await h.wait(started.job_id, within=20)
    if worker:
        await worker
    assert job.status == "cancelled" and "cancel" in job.log_tail
    assert process_gone(int(pid_file.read_text()))
    assert current_run(h.settings.extracts_dir, "flex") == before
    assert not [p for p in (h.settings.extracts_dir / "flex" / "staging").iterdir()]
    with pytest.raises(Exception, match="already finished"):
        await sync_service.cancel_job(h.instance, None, started.job_id)


async def test_stale_heartbeats_and_dead_owners_are_failed(h: Harness) -> None:
    await h.add_source("flex")
    old = (datetime.now(UTC) - timedelta(seconds=runlog.STALE_AFTER_SECONDS + 5)).isoformat().replace("+00:00", "Z")
    async with h.instance.control.transaction() as conn:
        ids = []
        for owner in ("worker:4242@elsewhere#aa", "worker:4243@elsewhere#bb", "server:999999@" + owner_id("x")
                      .split("@")[1].split("#")[0] + "#cc"):
            job = await jobs_repo.create(conn, sources=["flex"], tables=None, trigger="api", requested_by=None)
            assert await jobs_repo.claim(conn, job.id, owner)
            ids.append(job.id)
        await conn.execute("UPDATE jobs SET heartbeat_at = ? WHERE id = ?", (old, ids[0]))
    if h.mode == "arq":  # the worker's cron tick sweeps
        await tick({"instance": h.instance})
    else:
        await fail_dead_jobs(h.instance)
    stale, fresh, dead = [await h.job(i) for i in ids]
    assert stale.status == "failed" and stale.error == LOST
    assert fresh.status == "running"  # another host, recent heartbeat: alive as far as we know
    assert dead.status == "failed"  # this host, pid gone: failed without waiting for the heartbeat
    assert [(c, s) for c, s, _ in await h.health_errors()] == [("sync_interrupted", "flex")] * 2


async def test_due_schedules_create_one_job_per_tick(h: Harness) -> None:
    await h.add_source("cron", schedule="* * * * *", tables=["a"])
    async with h.instance.control.transaction() as conn:
        await conn.execute("UPDATE sources SET last_scheduled_at = ? WHERE name = 'cron'",
                           ((datetime.now(UTC) - timedelta(minutes=3)).isoformat().replace("+00:00", "Z"),))
    if h.mode == "inprocess":  # embedded: the server's background task evaluates schedules
        await h.runtime.stop()
        await h.start(background=True, tick=0.05)
    else:  # arq: only the worker's cron does; the server's loop must not
        await h.runtime.stop()
        await h.start(background=True, tick=0.05)
        await asyncio.sleep(0.5)
        async with h.instance.control.read() as conn:
            assert (await jobs_repo.page(conn, status=None, source=None, limit=10, offset=0))[1] == 0
        await tick({"instance": h.instance})
    for _ in range(200):
        async with h.instance.control.read() as conn:
            jobs, total = await jobs_repo.page(conn, status=None, source="cron", limit=10, offset=0)
        if total:
            break
        await asyncio.sleep(0.05)
    assert total == 1 and jobs[0].trigger == "schedule" and jobs[0].sources == ["cron"]
    await h.run(jobs[0].id)
    if h.mode == "arq":
        await tick({"instance": h.instance})  # same minute: nothing new
    await asyncio.sleep(0.3)
    async with h.instance.control.read() as conn:
        assert (await jobs_repo.page(conn, status=None, source="cron", limit=10, offset=0))[1] == 1


async def test_server_stop_cancels_running_jobs(data_dir: Path) -> None:
    h = await Harness("inprocess", data_dir, None).start()
    await h.add_source("flex", sleep=60)
    job_id = (await h.trigger("flex")).job_id
    await h.wait(job_id, ("running",))

    async def extracted() -> bool:
        return "table a done" in (await h.job(job_id)).log_tail

    await eventually(extracted, what="table a extracted")
    await h.runtime.stop()
    job = await h.job(job_id)
    assert job.status == "cancelled" and "shut down" in (job.error or "")
    [a] = job.tables  # extracted (rows known) but never published
    assert (a.id, a.status, a.rows, a.error) == ("flex.a", "skipped", 3, "not published: the job cancelled")
    assert current_run(h.settings.extracts_dir, "flex") is None
    await h.instance.close()


async def test_redis_down_fails_the_job_with_a_hint(data_dir: Path) -> None:
    h = Harness("inprocess", data_dir, None)
    h.settings = h.settings.__class__.load({**h.env, "REDIS_URL": "redis://127.0.0.1:1/0"})
    await h.start()
    await h.add_source("flex")
    with pytest.raises(Exception) as caught:
        await h.trigger("flex")
    assert getattr(caught.value, "code", None) == "queue_unavailable" and "REDIS_URL" in caught.value.hint
    async with h.instance.control.read() as conn:
        [job], _ = await jobs_repo.page(conn, status=None, source=None, limit=5, offset=0)
    assert job.status == "failed" and "could not be queued" in (job.error or "")
    await h.close()
