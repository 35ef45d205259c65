"""`agnes smoke` and scripts/smoke-test.sh against live instances: green with sample data, red when broken."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_analyst_cli import ADMIN, PASSWORD, admin_setup
from tests.helpers import AGNES, LiveServer, free_port
from tests.integration.jobs_support import make_connectors

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def smoke(url: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict, str]:
    proc = subprocess.run([*AGNES, "smoke", url, "--sync-timeout", "60", *args], capture_output=True, text=True,
                          timeout=180, env={**os.environ, **(env or {})})
    return proc.returncode, json.loads(proc.stdout), proc.stderr.strip()


@pytest.fixture
def live(data_dir: Path, tmp_path: Path):
    srv = LiveServer(data_dir, AGNES_CUSTOM_CONNECTORS_DIR=str(make_connectors(tmp_path / "custom")))
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def test_green_then_wrong_password_then_failing_sync(live: LiveServer, data_dir: Path, tmp_path: Path):
    admin = admin_setup(live.url, data_dir)  # sample data synced and served

    code, report, summary = smoke(live.url, "--email", ADMIN, env={"AGNES_SMOKE_PASSWORD": PASSWORD})
    assert code == 0, summary
    assert report["ok"] and report["failed_step"] is None
    assert [s["step"] for s in report["steps"]] == ["health", "token", "catalog", "query", "read_back",
                                                   "sync_trigger", "sync_wait", "health_after"]
    assert all(s["status"] == "passed" and s["seconds"] >= 0 for s in report["steps"])
    read_back = next(s for s in report["steps"] if s["step"] == "read_back")["detail"]
    assert "as in the catalog" in read_back and summary.startswith("smoke passed")

    # the script the workflow runs, with credentials from the environment only
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "AGNES_SMOKE_EMAIL": ADMIN, "AGNES_SMOKE_PASSWORD": PASSWORD,
           "AGNES_SMOKE_REPORT": str(tmp_path / "r.json"), "AGNES_SMOKE_SYNC_TIMEOUT": "60"}
    script = subprocess.run([str(ROOT / "scripts" / "smoke-test.sh"), f"127.0.0.1:{live.port}"], env=env,
                            capture_output=True, text=True, timeout=180)
    assert script.returncode == 0, script.stderr
    assert json.loads((tmp_path / "r.json").read_text())["ok"] is True
    no_creds = subprocess.run([str(ROOT / "scripts" / "smoke-test.sh"), "x:1"], capture_output=True, text=True,
                              env={"PATH": os.environ["PATH"]})
    assert no_creds.returncode == 2 and "AGNES_SMOKE_TOKEN" in no_creds.stderr

    code, report, summary = smoke(live.url, "--email", ADMIN, "--password", "not-the-password-at-all")
    assert code == 1 and report["failed_step"] == "token"
    assert summary.startswith("smoke FAILED at step token: HTTP 401 invalid_credentials") and "\n" not in summary
    assert [s["status"] for s in report["steps"]][:3] == ["passed", "failed", "skipped"]

    token = httpx.post(live.url + "/api/tokens", headers=admin, json={"name": "smoke"}).json()["token"]
    created = httpx.post(live.url + "/api/admin/configure", headers=admin,
                         json={"data_source": "custom", "name": "flaky", "connector": "flex",
                               "options": {"crash": True}})
    assert created.status_code == 200, created.text
    code, report, summary = smoke(live.url, "--token", token)
    assert code == 1 and report["failed_step"] == "sync_wait", summary
    assert summary.startswith("smoke FAILED at step sync_wait: job ") and "flaky" in summary
    assert report["steps"][-1] == {"step": "health_after", "status": "skipped", "seconds": 0.0,
                                   "detail": "not run: sync_wait failed"}


def test_empty_catalog_is_red(data_dir: Path):
    srv = LiveServer(data_dir)
    try:
        srv.wait_ready()
        token = (data_dir / "state" / "setup-token").read_text().strip()
        boot = httpx.post(srv.url + "/auth/bootstrap", json={"email": ADMIN, "password": PASSWORD,
                                                              "setup_token": token})
        assert boot.status_code == 201
        code, report, summary = smoke(srv.url, "--email", ADMIN, "--password", PASSWORD)
        assert code == 1 and report["failed_step"] == "catalog"
        assert summary == "smoke FAILED at step catalog: the catalog has 0 tables (no source synced, or none " \
                          "readable by this user)"
    finally:
        srv.stop()


def test_server_down_is_red_at_health():
    code, report, summary = smoke(f"127.0.0.1:{free_port()}", "--token", "x")
    assert code == 1 and report["failed_step"] == "health" and "ConnectError" in summary
    assert report["url"].startswith("http://127.0.0.1:")


def test_usage_error_without_credentials():
    proc = subprocess.run([*AGNES, "smoke", "http://127.0.0.1:9"], capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if not k.startswith("AGNES_SMOKE")})
    assert proc.returncode == 2 and "hint:" in proc.stderr
