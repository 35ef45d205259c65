"""SIGKILL the process running a sync mid-connector: `agnes serve` (embedded) and `agnes worker` (arq).

After a restart the job is failed (heartbeat lost), the previous run is still
the one served, the staging folder is gone and health shows the interruption.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from agnes.control import health_errors
from agnes.control import jobs as jobs_repo
from agnes.control.db import ControlPlane
from agnes.engine.publish import current_run
from agnes.jobs.recovery import LOST
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, setup_token_of
from tests.helpers import AGNES, LiveServer, agnes_env, run_agnes
from tests.integration.jobs_support import (  # noqa: F401 - redis_url is a fixture
    Harness,
    eventually,
    exists,
    process_gone,
    redis_url,
)

pytestmark = [pytest.mark.slow, pytest.mark.redis]


async def _job(cp: ControlPlane, job_id: int) -> jobs_repo.JobRecord:
    async with cp.read() as conn:
        job = await jobs_repo.get(conn, job_id)
    assert job is not None
    return job


async def _wait(cp: ControlPlane, job_id: int, statuses: tuple[str, ...], within: float = 60) -> Any:
    async def reached() -> bool:
        return (await _job(cp, job_id)).status in statuses

    await eventually(reached, within, f"job {job_id} in {statuses}")
    return await _job(cp, job_id)


def _runs_in(staging: Path) -> list[Path]:
    return [p for p in staging.iterdir() if p.is_dir()]


class Worker:
    """`agnes worker` in a subprocess."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.log = data_dir.parent / f"worker-{time.monotonic_ns()}.log"
        self._out = self.log.open("w")
        self.proc = subprocess.Popen([*AGNES, "worker"], env=agnes_env(data_dir, **env), stdout=self._out,
                                     stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
        self._out.close()


@pytest.mark.parametrize("mode", ["serve", "worker"])
async def test_sigkill_during_sync_leaves_the_previous_run_serving(mode: str, data_dir: Path, tmp_path: Path,
                                                                    request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("redis_url") if mode == "worker" else None
    h = await Harness("arq" if mode == "worker" else "inprocess", data_dir, url).start()
    env = {k: v for k, v in h.env.items() if k != "DATA_DIR"}
    pid_file = tmp_path / "connector.pid"
    await h.add_source("flex", version=1)
    await h.runtime.stop()  # from here on the subprocess runs the jobs; `h` only reads and enqueues
    if mode == "worker":
        await h.start()
    cp = h.instance.control

    def start() -> Any:
        if mode == "worker":
            return Worker(data_dir, env)
        server = LiveServer(data_dir, **env)
        server.wait_ready()
        return server

    proc = start()
    try:
        if mode == "serve":
            token = setup_token_of(data_dir)
            async with httpx.AsyncClient(base_url=proc.url) as http:
                boot = await http.post("/auth/bootstrap", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD,
                                                                "setup_token": token})
            headers = {"Authorization": f"Bearer {boot.json()['access_token']}"}

            async def trigger() -> int:
                async with httpx.AsyncClient(base_url=proc.url) as http:
                    resp = await http.post("/api/sync/trigger", json={"source": "flex"}, headers=headers)
                assert resp.status_code == 200, resp.text
                return resp.json()["job_id"]
        else:
            async def trigger() -> int:
                return (await h.trigger("flex")).job_id

        first = await _wait(cp, await trigger(), ("succeeded",))
        before = current_run(h.settings.extracts_dir, "flex")
        assert before is not None and first.status == "succeeded"
        if mode == "worker":
            assert run_agnes(["worker", "--check"], data_dir, **env).returncode == 0

        await h.set_options("flex", version=2, sleep=120, pid_file=str(pid_file))
        job_id = await trigger()
        await _wait(cp, job_id, ("running",))
        await eventually(lambda: asyncio.to_thread(exists, pid_file), what="connector start")
        staging = h.settings.extracts_dir / "flex" / "staging"
        assert _runs_in(staging), "the sync should be writing into staging"

        os.kill(proc.proc.pid, signal.SIGKILL)
        proc.proc.wait(timeout=10)
        connector = int(pid_file.read_text())
        await eventually(lambda: asyncio.to_thread(process_gone, connector), 10, "the orphaned connector's exit")
        assert (await _job(cp, job_id)).status == "running"  # nobody could record anything yet
        assert current_run(h.settings.extracts_dir, "flex") == before

        proc.stop()
        proc = start()
        job = await _wait(cp, job_id, ("failed",), within=60)
        assert job.error == LOST and LOST in job.log_tail
        assert current_run(h.settings.extracts_dir, "flex") == before
        # The server's sweep may fail the job before the restarted worker's start-up cleans staging.
        await eventually(lambda: asyncio.to_thread(lambda: not _runs_in(staging)), 30,
                         "leftovers cleaned at start")
        async with cp.read() as conn:
            errors = [(e.code, e.source) for e in await health_errors.open_errors(conn)]
        assert ("sync_interrupted", "flex") in errors
    finally:
        proc.stop()
        await h.close()
