"""Shared pieces of the job tests: a real Redis, test connectors, and one harness per queue kind.

`Harness("inprocess")` runs jobs as the server does without REDIS_URL;
`Harness("arq")` enqueues to a real redis-server and runs a real arq Worker
(burst mode) in this process, exactly as `agnes worker` would.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from arq import Worker

from agnes.control import jobs as jobs_repo
from agnes.control import sources as sources_repo
from agnes.jobs.runtime import JobRuntime, start_job_runtime
from agnes.jobs.worker import worker_settings
from agnes.services import sync as sync_service
from agnes.services.instance import Instance, start_instance
from agnes.settings import Settings
from tests.helpers import free_port

MODES = ["inprocess", "arq"]

# One configurable test connector: tables, failures, crash, invalid output, sleep, pid file.
FLEX = '''
import os, sys, time
import duckdb, pyarrow as pa
from agnes.extract import ExtractWriter, META_DDL, emit, log, read_context

ctx = read_context()
cfg = ctx.config
if cfg.get("pid_file"):
    with open(cfg["pid_file"], "w") as f:
        f.write(str(os.getpid()))
if cfg.get("crash"):
    log("connecting to the API ...")
    log("boom: 401 Unauthorized")
    sys.exit(3)
if cfg.get("invalid"):
    con = duckdb.connect(os.path.join(ctx.output_dir, "extract.duckdb"))
    con.execute(META_DDL)
    con.execute("INSERT INTO _meta VALUES ('ghost', NULL, 1, 1, TIMESTAMP '2026-01-01 00:00:00', 'local')")
    con.close()
    emit("table_done", table="ghost", rows=1, bytes=1)
    sys.exit(0)
with ExtractWriter(ctx.output_dir) as w:
    for t in cfg.get("tables", ["a", "b"]):
        if not ctx.wants(t):
            continue
        emit("table_started", table=t)
        if t in cfg.get("fail", []):
            emit("table_failed", table=t, error=f"{t} exploded at the source")
            continue
        info = w.add_arrow(t, pa.table({"v": [cfg.get("version", 1)] * 3}))
        emit("table_done", table=t, rows=info.rows, bytes=info.size_bytes)
        time.sleep(cfg.get("sleep", 0))  # no parent check of its own: the runner's launch kills orphans
'''


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A real redis-server on a free port, stopped when the module is done."""
    exe = shutil.which("redis-server")
    assert exe, "redis-server is required for the arq job tests (apt-get install redis-server)"
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True).stdout.strip() \
            != "PONG":
        assert time.monotonic() < deadline and proc.poll() is None, "redis-server did not start"
        time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def flush_redis(url: str) -> None:
    port = url.rsplit(":", 1)[1].split("/")[0]
    subprocess.run(["redis-cli", "-p", port, "flushall"], check=True, capture_output=True)


def make_connectors(folder: Path) -> Path:
    (folder / "flex").mkdir(parents=True, exist_ok=True)
    (folder / "flex" / "extractor.py").write_text(textwrap.dedent(FLEX))
    return folder


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 30, what: str = "condition") -> None:
    """Poll `check` until it is true; fail after `within` seconds."""
    deadline = time.monotonic() + within
    for _ in range(1_000_000):
        if await check():
            return
        assert time.monotonic() < deadline, f"{what} not reached within {within}s"
        await asyncio.sleep(0.05)


def exists(path: Path) -> bool:
    return path.exists()


def process_gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


class Harness:
    """A server-side instance with its job runtime, plus (arq) a way to run a worker."""

    def __init__(self, mode: str, data_dir: Path, redis_url: str | None) -> None:
        self.mode, self.data_dir = mode, data_dir
        env = {"DATA_DIR": str(data_dir), "AGNES_CUSTOM_CONNECTORS_DIR": str(make_connectors(data_dir.parent / "cx"))}
        if mode == "arq":
            assert redis_url
            flush_redis(redis_url)
            env["REDIS_URL"] = redis_url
        self.env = env
        self.settings = Settings.load(env)
        self.instance: Instance
        self.runtime: JobRuntime

    async def start(self, **runtime: Any) -> Harness:
        self.instance = await start_instance(self.settings, serve=False)
        self.runtime = await start_job_runtime(self.instance, background=runtime.pop("background", False), **runtime)
        return self

    async def close(self) -> None:
        await self.runtime.stop()
        await self.instance.close()

    # --- sources (inserted directly: tests only) ---------------------------------------

    async def add_source(self, name: str, type: str = "custom", schedule: str | None = None, **options: Any) -> None:
        opts = {"connector": "flex", "options": options} if type == "custom" else options
        async with self.instance.control.transaction() as conn:
            await sources_repo.create(conn, name=name, type=type, options=opts, schedule=schedule,
                                      visible_to_all=False, origin="api", auto_discover=False)

    async def set_options(self, name: str, **options: Any) -> None:
        async with self.instance.control.transaction() as conn:
            await sources_repo.update(conn, name, options={"connector": "flex", "options": options})

    # --- jobs ----------------------------------------------------------------------------

    async def trigger(self, source: str | None = None, tables: list[str] | None = None) -> sync_service.Triggered:
        return await sync_service.trigger_sync(self.instance, None, source=source, tables=tables, trigger="cli")

    async def job(self, job_id: int) -> sync_service.Job:
        return await sync_service.get_job(self.instance, job_id)

    def worker(self, **overrides: Any) -> Worker:
        kwargs = {**worker_settings(self.settings), "cron_jobs": [], **overrides}
        return Worker(**kwargs, burst=True, poll_delay=0.01, handle_signals=False)

    async def run_worker(self) -> None:
        worker = self.worker()
        try:
            await worker.main()
        finally:
            await worker.close()

    async def wait(self, job_id: int, statuses: tuple[str, ...] = jobs_repo.FINAL,
                   within: float = 60) -> sync_service.Job:
        async def reached() -> bool:
            return (await self.job(job_id)).status in statuses

        await eventually(reached, within, f"job {job_id} in {statuses}")
        return await self.job(job_id)

    async def run(self, job_id: int) -> sync_service.Job:
        """Let the job run to its end (arq: a burst worker; in-process: it already runs)."""
        if self.mode == "arq":
            await self.run_worker()
        return await self.wait(job_id)

    async def sync(self, source: str | None = None, tables: list[str] | None = None) -> sync_service.Job:
        return await self.run((await self.trigger(source, tables)).job_id)

    async def health_errors(self) -> list[tuple[str, str | None, str]]:
        from agnes.control import health_errors

        async with self.instance.control.read() as conn:
            return [(e.code, e.source, e.message or "") for e in await health_errors.open_errors(conn)]
