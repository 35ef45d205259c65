"""The Tier B example (examples/standalone-connector) hands a run to a live server through the inbox.

Its entrypoint runs directly on the host (as its container would, with the data volume at the
server's data directory) against a JSON API served on 127.0.0.1; the server validates,
publishes and serves the result. Its Dockerfile and compose service are checked statically.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml

from tests.helpers import LiveServer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "standalone-connector"
RATES = [
    {"day": "2024-03-01", "currency": "usd", "rate_to_eur": 0.92},
    {"day": "2024-03-01", "currency": "CZK", "rate_to_eur": 0.0395},
    {"day": "2024-03-02", "currency": "USD", "rate_to_eur": 0.925},
]
TOKEN = "rates-api-secret-123"


@pytest.fixture
def rates_api():
    """The partner's JSON API, on loopback, answering only with the right bearer token."""
    seen: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            seen.append(self.headers.get("Authorization"))
            ok = self.path == "/rates.json" and self.headers.get("Authorization") == f"Bearer {TOKEN}"
            body = json.dumps(RATES if ok else {"error": "unauthorized"}).encode()
            self.send_response(200 if ok else 401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/rates.json", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def run_producer(inbox: Path, url: str, token: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGNES_", "RATES_"))}
    env.update(AGNES_INBOX=str(inbox), RATES_API_URL=url, **({"RATES_API_TOKEN": token} if token else {}))
    return subprocess.run([sys.executable, str(EXAMPLE / "producer.py")], env=env, capture_output=True, text=True,
                          timeout=120)


def _admin(url: str, data_dir: Path) -> dict[str, str]:
    token = (data_dir / "state" / "setup-token").read_text().strip()
    boot = httpx.post(url + "/auth/bootstrap", json={"email": "admin@example.com",
                                                     "password": "correct-horse-battery-staple", "setup_token": token})
    assert boot.status_code == 201, boot.text
    return {"Authorization": f"Bearer {boot.json()['access_token']}"}


def _wait_served(url: str, h: dict[str, str], source: str, seconds: float = 60) -> dict:
    deadline = time.monotonic() + seconds
    jobs: dict = {}
    while time.monotonic() < deadline:
        jobs = httpx.get(f"{url}/api/sync/jobs?source={source}", headers=h).json()
        done = [j for j in jobs["items"] if j["status"] not in ("queued", "running")]
        if done and httpx.get(f"{url}/api/catalog/tables/{source}.rates", headers=h).status_code == 200:
            return done[0]
        time.sleep(0.3)
    raise AssertionError(f"{source} not served in {seconds}s: {jobs}")


@pytest.mark.slow
def test_producer_run_is_published_and_served(data_dir: Path, rates_api):
    url, seen = rates_api
    server = LiveServer(data_dir)
    try:
        server.wait_ready()
        h = _admin(server.url, data_dir)
        inbox = data_dir / "inbox" / "exchange_rates"
        unauthorized = run_producer(inbox, url, None)
        assert unauthorized.returncode == 1 and "401" in unauthorized.stderr
        assert not (inbox / "READY").exists()  # nothing half-done is handed over

        ran = run_producer(inbox, url, TOKEN)
        assert ran.returncode == 0, ran.stderr
        assert "handed over 3 rows" in ran.stdout and seen[-1] == f"Bearer {TOKEN}"
        job = _wait_served(server.url, h, "exchange_rates")
        assert job["status"] == "succeeded" and job["trigger"] == "inbox", job
        assert not (inbox / "READY").exists() and not (inbox / "extract.duckdb").exists()  # taken by the server
        assert not [p for p in inbox.parent.iterdir() if p.name.startswith(".")]  # no staging left behind

        source = httpx.get(server.url + "/api/admin/sources/exchange_rates", headers=h).json()
        assert source["type"] == "external"
        answer = httpx.post(server.url + "/api/query", headers=h, json={
            "sql": "SELECT day, currency, rate_to_eur FROM exchange_rates.rates ORDER BY day, currency"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["rows"] == [["2024-03-01", "CZK", 0.0395], ["2024-03-01", "USD", 0.92],
                                         ["2024-03-02", "USD", 0.925]]
        assert TOKEN not in "".join(p.read_bytes().decode("latin-1") for p in data_dir.rglob("*") if p.is_file())
    finally:
        server.stop()


def test_producer_refuses_while_the_previous_run_waits(tmp_path: Path, rates_api):
    url, _ = rates_api
    inbox = tmp_path / "inbox" / "exchange_rates"
    inbox.mkdir(parents=True)
    (inbox / "READY").touch()
    waiting = run_producer(inbox, url, TOKEN)
    assert waiting.returncode == 3 and "not taken the previous run" in waiting.stderr
    missing = run_producer(inbox, "", None)
    assert missing.returncode == 2 and "RATES_API_URL" in missing.stderr
    local_file = run_producer(tmp_path / "inbox" / "other", "file:///etc/passwd", None)
    assert local_file.returncode == 2 and "http(s)" in local_file.stderr


def test_dockerfile_and_compose_service_match_agnes():
    pinned = re.search(r'"duckdb==([\d.]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    dockerfile = (EXAMPLE / "Dockerfile").read_text()
    assert f"duckdb=={pinned}" in dockerfile, "the producer must write extracts the Agnes DuckDB can read"
    assert re.search(r"^USER 10001:10001$", dockerfile, re.M) and 'ENTRYPOINT ["python", "/app/producer.py"]' \
        in dockerfile
    service = yaml.safe_load((EXAMPLE / "docker-compose.override.yml").read_text())["services"]["exchange-rates"]
    assert service["profiles"] == ["extract"]
    assert service["environment"]["AGNES_INBOX"] == "/data/inbox/exchange_rates"
    stack = yaml.safe_load((ROOT / "deploy" / "compose" / "docker-compose.yml").read_text())
    volumes = [v.split(":") for v in service["volumes"]]
    assert volumes == [["agnes-data", "/data"]] and "agnes-data" in stack["volumes"]
    assert set(service["networks"]) <= set(stack["networks"])
    assert (ROOT / service["build"]).resolve() == EXAMPLE
    assert service["user"] == "10001:10001"


def test_static_checkers_accept_the_example():
    bin_dir = Path(sys.executable).parent
    hadolint, compose = shutil.which("hadolint", path=str(bin_dir)), shutil.which("docker-compose", path=str(bin_dir))
    if not hadolint or not compose:
        pytest.fail("hadolint / docker-compose are not installed in the venv: run `make test` (it installs the lint "
                    "extra) or `.venv/bin/python -m pip install -e '.[lint]'`")
    lint = subprocess.run([hadolint, "--failure-threshold", "warning", str(EXAMPLE / "Dockerfile")],
                          capture_output=True, text=True, timeout=60)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    config = subprocess.run([compose, "-f", "docker-compose.yml", "-f", str(EXAMPLE / "docker-compose.override.yml"),
                             "--profile", "extract", "config", "-q"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, env={**os.environ, "COMPOSE_PROJECT_NAME": "agnes-example-check"})
    assert config.returncode == 0, config.stderr
