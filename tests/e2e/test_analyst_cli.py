"""The analyst CLI against a live `agnes serve`: login, catalog, pull, local and remote query, revocation.

Also checks two things only a real server process shows: the memory cap set at
`agnes serve`, and that a stream cut by its time limit breaks the download
(the client sees an incomplete body, never a short "complete" CSV).
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import httpx
import pytest

from agnes.engine.limits import recommended_cap
from tests.helpers import LiveServer, run_agnes

pytestmark = pytest.mark.slow
ADMIN, PASSWORD = "admin@example.com", "correct-horse-battery-staple"
ANALYST, ANALYST_PASSWORD = "analyst@example.com", "tidy-river-stone-lamp-42"


def admin_setup(url: str, data_dir: Path) -> dict[str, str]:
    token = (data_dir / "state" / "setup-token").read_text().strip()
    boot = httpx.post(url + "/auth/bootstrap", json={"email": ADMIN, "password": PASSWORD, "setup_token": token})
    assert boot.status_code == 201, boot.text
    h = {"Authorization": f"Bearer {boot.json()['access_token']}"}
    assert httpx.post(url + "/api/admin/configure", json={"data_source": "sample"}, headers=h).status_code == 200
    job = httpx.post(url + "/api/sync/trigger", json={}, headers=h, timeout=30).json()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = httpx.get(f"{url}/api/sync/jobs/{job['job_id']}", headers=h).json()["status"]
        tables = httpx.get(url + "/api/catalog/tables", headers=h).json().get("count", 0)
        if status == "succeeded" and tables == 3:
            return h
        assert status in ("queued", "running", "succeeded"), status
        time.sleep(0.2)
    raise AssertionError("sample data was not served in time")


@pytest.fixture
def server(data_dir: Path):
    srv = LiveServer(data_dir, AGNES_QUERY_STREAM_TIMEOUT="1", AGNES_QUERY_STREAM_MAX_ROWS="2000000000")
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def agnes(args: list[str], data_dir: Path, client_cfg: Path, **kw):
    return run_agnes(args, data_dir, AGNES_CLIENT_CONFIG=str(client_cfg), **kw)


def test_analyst_workflow(server: LiveServer, data_dir: Path, tmp_path: Path):
    admin = admin_setup(server.url, data_dir)
    user = httpx.post(server.url + "/api/users", headers=admin,
                      json={"email": ANALYST, "password": ANALYST_PASSWORD, "role": "analyst"}).json()
    httpx.post(server.url + "/api/admin/grants", headers=admin, json={"user_id": user["id"], "target": "sample.*"})
    cfg, local = tmp_path / "client" / "client.json", tmp_path / "analysis"

    bad = agnes(["login", "--url", server.url, "--email", ANALYST, "--password-stdin"], data_dir, cfg,
                input="wrong-password-here\n")
    assert bad.returncode == 1 and "invalid_credentials" in bad.stderr and "hint" in bad.stderr
    done = agnes(["login", "--url", server.url, "--email", ANALYST, "--password-stdin", "--dir", str(local)],
                 data_dir, cfg, input=ANALYST_PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    stored = json.loads(cfg.read_text())
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600 and stored["token_kind"] == "api"
    assert ANALYST_PASSWORD not in cfg.read_text()
    tokens = httpx.get(server.url + "/api/tokens", headers={"Authorization": f"Bearer {stored['token']}"}).json()
    assert [t["name"].split("@")[0] for t in tokens["items"]] == ["agnes-cli"]  # a long-lived token of its own

    listed = agnes(["catalog"], data_dir, cfg)
    assert listed.returncode == 0 and "sample.orders" in listed.stdout and "3 table(s)" in listed.stdout

    first = agnes(["pull"], data_dir, cfg)
    assert first.returncode == 0, first.stderr
    assert "downloaded 3, up to date 0, removed 0" in first.stdout
    assert (local / "data" / "sample" / "orders.parquet").is_file() and (local / "agnes.duckdb").is_file()
    counted = agnes(["query", "SELECT count(*) AS n FROM orders", "--format", "json"], data_dir, cfg)
    assert counted.returncode == 0, counted.stderr
    assert json.loads(counted.stdout)["rows"] == [[10_000]]
    csv = agnes(["query", "SELECT product_id, sku FROM sample.products ORDER BY 1 LIMIT 2", "--format", "csv"],
                data_dir, cfg)
    assert csv.stdout.splitlines() == ['"product_id","sku"', '1,"SKU-00001"', '2,"SKU-00002"']
    shown = agnes(["query", "SELECT status, count(*) FROM sample.orders GROUP BY 1 ORDER BY 1"], data_dir, cfg)
    assert "delivered" in shown.stdout and "row(s)" in shown.stdout

    again = agnes(["pull"], data_dir, cfg)
    assert "downloaded 0, up to date 3, removed 0" in again.stdout

    httpx.request("DELETE", server.url + "/api/admin/grants", headers=admin,
                  json={"user_id": user["id"], "target": "sample.*"})
    httpx.post(server.url + "/api/admin/grants", headers=admin, json={"user_id": user["id"], "target": "sample.orders"})
    revoked = agnes(["pull"], data_dir, cfg)
    assert "removed 2 (sample.customers, sample.products)" in revoked.stdout, revoked.stdout
    assert not (local / "data" / "sample" / "customers.parquet").exists()
    gone = agnes(["query", "SELECT count(*) FROM sample.customers"], data_dir, cfg)
    assert gone.returncode == 1 and "query_failed" in gone.stderr

    remote = agnes(["query", "--remote", "SELECT count(*) AS n FROM sample.orders", "--format", "json"], data_dir, cfg)
    assert json.loads(remote.stdout)["rows"] == [[10_000]], remote.stderr
    refused = agnes(["query", "--remote", "SELECT * FROM sample.customers"], data_dir, cfg)
    assert refused.returncode == 1 and "table_not_found" in refused.stderr and "catalog" in refused.stderr
    assert not list(local.rglob(".*.part-*"))


def test_memory_cap_and_broken_streams(server: LiveServer, data_dir: Path):
    limits = Path(f"/proc/{server.proc.pid}/limits").read_text()
    line = next(x for x in limits.splitlines() if x.startswith("Max data size"))
    assert int(line.split()[3]) == recommended_cap("2GB")  # query.memory_cap: auto
    admin = admin_setup(server.url, data_dir)
    with pytest.raises(httpx.RemoteProtocolError), httpx.stream(
            "POST", server.url + "/api/query", headers={**admin, "Accept": "text/csv"}, timeout=30,
            json={"sql": "SELECT range AS i, range * 2 AS j FROM range(2000000000)"}) as resp:
        assert resp.status_code == 200
        for _ in resp.iter_bytes():
            pass
    assert httpx.get(server.url + "/api/health").status_code == 200
    ok = httpx.post(server.url + "/api/query", headers=admin, json={"sql": "SELECT 1 AS one"})
    assert ok.json()["rows"] == [[1]]
    assert os.path.exists(server.log)


def prompt_login(args: list[str], data_dir: Path, client_cfg: Path, password: str) -> tuple[int, str]:
    """Run `agnes login` on a pseudo-terminal and answer its hidden password prompt like a person."""
    import pty
    import select
    import termios

    from tests.helpers import AGNES, agnes_env

    env = agnes_env(data_dir, AGNES_CLIENT_CONFIG=str(client_cfg), COLUMNS="200")
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session with the pty as its controlling terminal (getpass reads /dev/tty)
        os.execvpe(AGNES[0], [*AGNES, *args], env)  # noqa: S606 - the test's own interpreter
    seen, answered, deadline = b"", False, time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if not answered and b"Password:" in seen and not termios.tcgetattr(fd)[3] & termios.ECHO:
                os.write(fd, password.encode() + b"\n")  # only once echo is off: getpass flushes earlier input
                answered = True
            ready, _, _ = select.select([fd], [], [], 0.1)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(fd)  # a child still waiting gets SIGHUP
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), seen.decode(errors="replace")


def test_login_prompt_token_reuse_and_named_pull(server: LiveServer, data_dir: Path, tmp_path: Path):
    admin = admin_setup(server.url, data_dir)
    user = httpx.post(server.url + "/api/users", headers=admin,
                      json={"email": ANALYST, "password": ANALYST_PASSWORD, "role": "analyst"}).json()
    httpx.post(server.url + "/api/admin/grants", headers=admin, json={"user_id": user["id"], "target": "sample.*"})
    cfg, local = tmp_path / "client" / "client.json", tmp_path / "analysis"

    code, screen = prompt_login(["login", "--url", server.url, "--email", ANALYST, "--dir", str(local)],
                                data_dir, cfg, ANALYST_PASSWORD)
    assert code == 0, screen
    assert "Password:" in screen and ANALYST_PASSWORD not in screen  # hidden input, never echoed
    first = json.loads(cfg.read_text())["token"]

    def tokens(token: str) -> list[dict]:
        resp = httpx.get(server.url + "/api/tokens", headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 200, resp.text
        return resp.json()["items"]

    assert len(tokens(first)) == 1
    again = agnes(["login", "--url", server.url, "--email", ANALYST, "--password-stdin", "--dir", str(local)],
                  data_dir, cfg, input=ANALYST_PASSWORD + "\n")
    assert again.returncode == 0, again.stderr
    second = json.loads(cfg.read_text())["token"]
    assert second != first and "Revoked the previous API token" in again.stdout, again.stdout + again.stderr
    assert [t["prefix"] for t in tokens(second)] == [second[:12]]  # logins do not pile up tokens
    assert httpx.get(server.url + "/api/me", headers={"Authorization": f"Bearer {first}"}).status_code == 401

    # --token: a token made elsewhere (e.g. in the UI); the login-made one is revoked once it works
    made = httpx.post(server.url + "/api/tokens", json={"name": "laptop"},
                      headers={"Authorization": f"Bearer {second}"}).json()["token"]
    with_token = agnes(["login", "--url", server.url, "--token", made, "--dir", str(local)], data_dir, cfg)
    assert with_token.returncode == 0, with_token.stderr
    stored = json.loads(cfg.read_text())
    assert stored["token"] == made and stored["email"] == ANALYST and stored["token_kind"] == "api"
    assert [t["name"] for t in tokens(made)] == ["laptop"]
    bad = agnes(["login", "--url", server.url, "--token", "agnes_not-a-real-token"], data_dir, cfg)
    assert bad.returncode == 1 and "hint" in bad.stderr
    assert json.loads(cfg.read_text())["token"] == made  # a failed login keeps the working one

    named = agnes(["pull", "sample.orders", "sample.products"], data_dir, cfg)
    assert named.returncode == 0, named.stderr
    assert "downloaded 2, up to date 0, removed 0" in named.stdout
    assert (local / "data" / "sample" / "orders.parquet").is_file()
    assert not (local / "data" / "sample" / "customers.parquet").exists()
    unknown = agnes(["pull", "sample.nope"], data_dir, cfg)
    assert unknown.returncode == 1 and "table_not_found" in unknown.stderr and "agnes catalog" in unknown.stderr
    counted = agnes(["query", "SELECT count(*) AS n FROM sample.orders", "--format", "json"], data_dir, cfg)
    assert json.loads(counted.stdout)["rows"] == [[10_000]], counted.stderr
