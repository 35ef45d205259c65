"""The compose topology on the host: `agnes serve` + `agnes worker` sharing a data
directory and a real Redis. A sync runs in the worker; the server's serving
catalog picks the publication up through the control plane's counter."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import AGNES, LiveServer, agnes_env, run_agnes
from tests.integration.jobs_support import redis_url  # noqa: F401 - fixture

pytestmark = [pytest.mark.slow, pytest.mark.redis]
PASSWORD = "correct-horse-battery-staple"


def _poll(fn, within: float, what: str):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_worker_publishes_and_server_serves(data_dir: Path, redis_url: str) -> None:  # noqa: F811
    server = LiveServer(data_dir, REDIS_URL=redis_url)
    worker_log = (data_dir.parent / "worker.log").open("w")
    worker = subprocess.Popen([*AGNES, "worker"], env=agnes_env(data_dir, REDIS_URL=redis_url),
                              stdout=worker_log, stderr=subprocess.STDOUT)
    try:
        server.wait_ready()
        token = run_agnes(["setup-token"], data_dir, REDIS_URL=redis_url).stdout.strip()
        boot = httpx.post(server.url + "/auth/bootstrap",
                          json={"email": "admin@example.com", "password": PASSWORD, "setup_token": token})
        h = {"Authorization": f"Bearer {boot.json()['access_token']}"}
        assert httpx.post(server.url + "/api/admin/configure", json={"data_source": "sample"},
                          headers=h).status_code == 200
        job_id = httpx.post(server.url + "/api/sync/trigger", json={"source": "sample"}, headers=h).json()["job_id"]

        def finished():
            job = httpx.get(f"{server.url}/api/sync/jobs/{job_id}", headers=h).json()
            return job if job["status"] not in ("queued", "running") else None

        job = _poll(finished, 90, "the worker to run the sync")
        assert job["status"] == "succeeded", job
        assert "worker:" in httpx.get(f"{server.url}/api/sync/jobs/{job_id}", headers=h).text  # ran in the worker
        published_at = time.monotonic()

        def served():
            detail = httpx.get(server.url + "/api/health").json()["checks"]["catalog"]["detail"]
            return "1 sources served" in detail

        _poll(served, 10, "the server to attach the published run")
        assert time.monotonic() - published_at < 5  # the counter poll runs every 0.5 s
    finally:
        server.stop()
        worker.terminate()
        worker.wait(timeout=20)
        worker_log.close()
