"""SIGKILL a real `agnes serve` / `agnes worker` at each step of a publication, restart, check it all agrees.

The fault hook AGNES_FAULT_KILL_AT=<point> (agnes/jobs/faults.py) kills the
process running the sync exactly at a step. The control plane's publications
row is the commit point: before it, the restarted server must serve the old
data; after it, the new data - and in every case the job is failed (not
running), the publications row, the `current` pointer and what a query returns
agree, no unrecorded run is left and the registry knows the served tables.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from agnes.control import health_errors, publications
from agnes.control import jobs as jobs_repo
from agnes.control import tables as tables_repo
from agnes.engine.publish import RUN_ID_RE, current_run
from agnes.jobs.faults import ENV, POINTS
from agnes.jobs.recovery import LOST
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, setup_token_of
from tests.helpers import LiveServer
from tests.integration.jobs_support import (  # noqa: F401 - redis_url is a fixture
    Harness,
    eventually,
    process_gone,
    redis_url,
)
from tests.integration.test_jobs_sigkill import Worker

pytestmark = [pytest.mark.slow]

COMMITTED = {"connector": False, "validated": False, "installed": False, "recorded": True, "switched": True}
assert set(COMMITTED) == set(POINTS)


async def _query_v(url: str, headers: dict[str, str]) -> Any:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        resp = await http.post("/api/query", json={"sql": "SELECT max(v) AS v FROM flex.a"}, headers=headers)
    return resp.json()["rows"][0][0] if resp.status_code == 200 else resp.text


async def _served(url: str, headers: dict[str, str], expected: int) -> None:
    async def ok() -> bool:
        return await _query_v(url, headers) == expected

    try:
        await eventually(ok, 60, f"flex.a served with v={expected}")
    except AssertionError:
        raise AssertionError(f"flex.a answers {await _query_v(url, headers)!r}, expected v={expected}") from None


async def _bootstrap(url: str, data_dir: Path) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=url) as http:
        boot = await http.post("/auth/bootstrap", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD,
                                                        "setup_token": setup_token_of(data_dir)})
    assert boot.status_code == 201, boot.text
    return {"Authorization": f"Bearer {boot.json()['access_token']}"}


async def _trigger(url: str, headers: dict[str, str]) -> int:
    async with httpx.AsyncClient(base_url=url) as http:
        resp = await http.post("/api/sync/trigger", json={"source": "flex"}, headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.json()["job_id"]


async def _state(h: Harness, job_id: int) -> tuple[Any, Any, list[str], list[tuple[str, str | None]]]:
    async with h.instance.control.read() as conn:
        job = await jobs_repo.get(conn, job_id)
        pub = await publications.get(conn, "flex")
        registered = [t["name"] for t in await tables_repo.list_all(conn, "flex")]
        errors = [(e.code, e.source) for e in await health_errors.open_errors(conn)]
    return job, pub, registered, errors


def _runs(h: Harness) -> list[str]:
    return sorted(p.name for p in (h.settings.extracts_dir / "flex" / "runs").iterdir() if RUN_ID_RE.match(p.name))


async def _wait_killed(proc: Any) -> None:
    code = await asyncio.to_thread(proc.proc.wait, 120)
    assert code == -9, f"expected the fault hook to SIGKILL the process, exit code {code}"


async def _check_agreement(h: Harness, job_id: int, first_run: str, committed: bool) -> None:
    """After recovery: job failed, record == pointer == what is served; no unrecorded run; registry complete."""
    def problems(job: Any, pub: Any, registered: list[str], errors: list[Any]) -> list[str]:
        found = []
        if job.status != "failed" or job.error != LOST:
            found.append(f"job is {job.status} ({job.error})")
        if ("sync_interrupted", "flex") not in errors:
            found.append(f"no sync_interrupted health error: {errors}")
        if (pub.run_id != first_run) is not committed or pub.previous_run_id != (first_run if committed else None):
            found.append(f"publication {pub} (first run {first_run})")
        current = current_run(h.settings.extracts_dir, "flex")
        if current is None or current.name != pub.run_id:
            found.append(f"current -> {current} but the record says {pub.run_id}")
        if _runs(h) != sorted({first_run, pub.run_id}):
            found.append(f"runs on disk {_runs(h)}: an unrecorded run was left behind")
        if ("c" in registered) is not committed:  # v2 adds table c: registered iff published
            found.append(f"registry {registered}")
        staging = h.settings.extracts_dir / "flex" / "staging"
        if [p for p in staging.iterdir() if p.is_dir()]:
            found.append("staging not cleaned")
        return found

    async def agrees() -> bool:
        return not problems(*await _state(h, job_id))

    try:
        await eventually(agrees, 60, "recovery")
    except AssertionError:
        raise AssertionError("; ".join(problems(*await _state(h, job_id)))) from None


async def _first_publication(h: Harness, pid_file: Path) -> str:
    await h.add_source("flex", version=1)
    assert (await h.sync("flex")).status == "succeeded"
    async with h.instance.control.read() as conn:
        first = (await publications.get(conn, "flex")).run_id
    await h.set_options("flex", version=2, tables=["a", "b", "c"], pid_file=str(pid_file))
    return first


@pytest.mark.parametrize("point", POINTS)
async def test_embedded_server_killed_at_each_publication_step(point: str, data_dir: Path, tmp_path: Path) -> None:
    h = await Harness("inprocess", data_dir, None).start()
    pid_file = tmp_path / "connector.pid"
    server: LiveServer | None = None
    try:
        first = await _first_publication(h, pid_file)
        await h.runtime.stop()  # from here on `agnes serve` runs the jobs; `h` only reads
        env = {k: v for k, v in h.env.items() if k != "DATA_DIR"}
        server = LiveServer(data_dir, **env, **{ENV: point})
        await asyncio.to_thread(server.wait_ready)
        headers = await _bootstrap(server.url, data_dir)
        await _served(server.url, headers, 1)
        job_id = await _trigger(server.url, headers)
        await _wait_killed(server)
        connector = int(pid_file.read_text())
        await eventually(lambda: asyncio.to_thread(process_gone, connector), 30, "the connector's exit")

        job, pub, _registered, _errors = await _state(h, job_id)
        assert job.status == "running"  # nobody could record the end
        assert (pub.run_id != first) is COMMITTED[point], f"{point}: the record is the commit point"
        if point == "recorded":  # killed between the record and the pointer switch: the pointer lags
            assert current_run(h.settings.extracts_dir, "flex").name == first

        server.stop()
        server = LiveServer(data_dir, **env)  # no fault this time
        await asyncio.to_thread(server.wait_ready)
        await _check_agreement(h, job_id, first, COMMITTED[point])
        await _served(server.url, headers, 2 if COMMITTED[point] else 1)
    finally:
        if server is not None:
            server.stop()
        await h.close()


@pytest.mark.redis
@pytest.mark.parametrize("point", ["installed", "recorded"])
async def test_worker_killed_while_a_live_server_serves(point: str, data_dir: Path, tmp_path: Path,
                                                        redis_url: str) -> None:  # noqa: F811
    """arq mode: the server keeps running while the worker dies; it serves exactly what is recorded."""
    h = await Harness("arq", data_dir, redis_url).start()
    pid_file = tmp_path / "connector.pid"
    server: LiveServer | None = None
    worker: Worker | None = None
    try:
        await h.add_source("flex", version=1)
        await h.sync("flex")  # a burst arq worker in this process
        async with h.instance.control.read() as conn:
            first = (await publications.get(conn, "flex")).run_id
        await h.set_options("flex", version=2, tables=["a", "b", "c"], pid_file=str(pid_file))
        env = {k: v for k, v in h.env.items() if k != "DATA_DIR"}
        server = LiveServer(data_dir, **env)
        await asyncio.to_thread(server.wait_ready)
        headers = await _bootstrap(server.url, data_dir)
        await _served(server.url, headers, 1)
        worker = Worker(data_dir, {**env, ENV: point})
        job_id = await _trigger(server.url, headers)
        await _wait_killed(worker)
        worker.stop()
        # The live server follows the control plane at once: new data iff the record committed.
        await _served(server.url, headers, 2 if COMMITTED[point] else 1)
        worker = Worker(data_dir, env)  # its start-up recovery fails the job and reconciles the folder
        await _check_agreement(h, job_id, first, COMMITTED[point])
        await _served(server.url, headers, 2 if COMMITTED[point] else 1)
    finally:
        if worker is not None:
            worker.stop()
        if server is not None:
            server.stop()
        await h.close()
        if pid_file.exists():
            await eventually(lambda: asyncio.to_thread(process_gone, int(pid_file.read_text())), 30, "connector")
