"""SIGTERM (docker stop) on `agnes serve` or `agnes worker` during a sync: the job ends `cancelled`,
the connector is stopped, the process shuts down cleanly and the control plane is checkpointed."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, setup_token_of
from tests.helpers import AGNES, LiveServer, agnes_env
from tests.integration.jobs_support import make_connectors, process_gone, redis_url  # noqa: F401 - a fixture

pytestmark = pytest.mark.slow


def job_status(db: Path, job_id: int) -> str:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
    finally:
        con.close()


def start_slow_sync(srv: LiveServer, data_dir: Path, pid_file: Path) -> int:
    """Bootstrap, add a connector that sleeps, trigger it and wait until the connector runs."""
    boot = httpx.post(srv.url + "/auth/bootstrap", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD,
                                                          "setup_token": setup_token_of(data_dir)})
    h = {"Authorization": f"Bearer {boot.json()['access_token']}"}
    made = httpx.post(srv.url + "/api/admin/configure", headers=h, json={
        "data_source": "custom", "name": "slow", "connector": "flex",
        "options": {"tables": ["a"], "sleep": 120, "pid_file": str(pid_file)}})
    assert made.status_code == 200, made.text
    job_id = httpx.post(srv.url + "/api/sync/trigger", headers=h, json={"source": "slow"}).json()["job_id"]
    deadline = time.monotonic() + 60
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the connector did not start"
        time.sleep(0.1)
    assert job_status(data_dir / "state" / "agnes.sqlite", job_id) == "running"
    return job_id


@pytest.mark.redis
def test_worker_sigterm_cancels_its_running_sync(data_dir: Path, tmp_path: Path, redis_url: str):  # noqa: F811
    pid_file = tmp_path / "connector.pid"
    env = {"AGNES_CUSTOM_CONNECTORS_DIR": str(make_connectors(tmp_path / "custom")), "REDIS_URL": redis_url}
    srv = LiveServer(data_dir, **env)
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen([*AGNES, "worker"], env=agnes_env(data_dir, **env), stdout=out,
                                  stderr=subprocess.STDOUT)
    try:
        srv.wait_ready()
        job_id = start_slow_sync(srv, data_dir, pid_file)
        began = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
        assert time.monotonic() - began < 20, log.read_text()
        assert process_gone(int(pid_file.read_text())), "the connector outlived the worker"
        assert job_status(data_dir / "state" / "agnes.sqlite", job_id) == "cancelled", log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        srv.stop()


def test_sigterm_cancels_the_running_sync_and_checkpoints(data_dir: Path, tmp_path: Path):
    pid_file = tmp_path / "connector.pid"
    srv = LiveServer(data_dir, AGNES_CUSTOM_CONNECTORS_DIR=str(make_connectors(tmp_path / "custom")))
    try:
        srv.wait_ready()
        job_id = start_slow_sync(srv, data_dir, pid_file)
        began = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        # uvicorn re-raises SIGTERM after its clean shutdown (exit 143 in Docker): that is the convention
        assert srv.proc.wait(timeout=30) in (0, -signal.SIGTERM), srv.log.read_text()
        assert time.monotonic() - began < 20
        assert "Application shutdown complete" in srv.log.read_text()
    finally:
        srv.stop()
    assert process_gone(int(pid_file.read_text())), "the connector outlived the server"
    db = data_dir / "state" / "agnes.sqlite"
    wal = db.with_name("agnes.sqlite-wal")
    assert not wal.exists() or wal.stat().st_size == 0, "the WAL was not checkpointed at shutdown"
    assert job_status(db, job_id) == "cancelled"
