"""arq mode (REDIS_URL): /api/health warns while no `agnes worker` is alive — real Redis, a real worker."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from litestar.testing import AsyncTestClient

from agnes.app import create_app
from agnes.settings import Settings
from tests.helpers import AGNES, agnes_env, free_port
from tests.integration.jobs_support import flush_redis, redis_url  # noqa: F401 - the fixture

NO_WORKER = "No worker has reported in"


async def _warnings(client: AsyncTestClient) -> list[str]:
    resp = await client.get("/api/health")
    assert resp.status_code == 200, resp.text  # a missing worker degrades nothing by itself: jobs just wait
    return resp.json()["warnings"]


async def _until(check: Callable[[list[str]], bool], client: AsyncTestClient, within: float, what: str) -> list[str]:
    deadline = time.monotonic() + within
    while True:
        warnings = await _warnings(client)
        if check(warnings):
            return warnings
        assert time.monotonic() < deadline, f"{what} not seen within {within}s: {warnings}"
        await asyncio.sleep(0.2)


async def test_health_warns_while_no_worker_is_alive(data_dir: Path, redis_url: str) -> None:  # noqa: F811
    flush_redis(redis_url)
    app = create_app(Settings.load({"DATA_DIR": str(data_dir), "REDIS_URL": redis_url}))
    async with AsyncTestClient(app=app) as client:
        [warning] = [w for w in await _warnings(client) if NO_WORKER in w]
        assert "agnes worker" in warning and "schedules" in warning and "31 s" in warning
        log = (data_dir.parent / "worker.log").open("w")
        worker = subprocess.Popen([*AGNES, "worker"], env=agnes_env(data_dir, REDIS_URL=redis_url),  # noqa: ASYNC220
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            await _until(lambda ws: not any(NO_WORKER in w for w in ws), client, 90, "the worker reporting in")
        finally:
            worker.terminate()  # arq deletes its health key when it stops
            worker.wait(timeout=30)
            log.close()
        await _until(lambda ws: any(NO_WORKER in w for w in ws), client, 30, "the warning after the worker stopped")


async def test_health_warns_when_redis_cannot_be_reached(data_dir: Path) -> None:
    nobody = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    app = create_app(Settings.load({"DATA_DIR": str(data_dir), "REDIS_URL": nobody}))
    async with AsyncTestClient(app=app) as client:
        warnings = await _warnings(client)
    assert any("job queue (Redis) cannot be reached" in w and "REDIS_URL" in w for w in warnings), warnings
    assert not any(NO_WORKER in w for w in warnings)


def test_embedded_mode_never_asks_for_a_worker(data_dir: Path) -> None:
    from litestar.testing import TestClient

    with TestClient(app=create_app(Settings.load({"DATA_DIR": str(data_dir)}))) as client:
        warnings = client.get("/api/health").json()["warnings"]
    assert not any(NO_WORKER in w or "Redis" in w for w in warnings), warnings
