"""The commands a new user runs, as real processes against a real server."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import httpx
import pytest

from tests.helpers import LiveServer, run_agnes

pytestmark = pytest.mark.slow
PASSWORD = "correct-horse-battery-staple"


@pytest.fixture
def server(data_dir: Path):
    srv = LiveServer(data_dir)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def test_done_when_sequence(server: LiveServer, data_dir: Path):
    """Fresh start → setup_required → token from `agnes setup-token` → bootstrap → /auth/token."""
    health = httpx.get(server.url + "/api/health").json()
    assert health["setup_required"] is True
    assert httpx.get(server.url + "/api/users").status_code == 503
    cli = run_agnes(["setup-token"], data_dir)
    assert cli.returncode == 0, cli.stderr
    token = cli.stdout.strip()
    assert token and token in server.log.read_text()  # printed in the log too
    boot = httpx.post(server.url + "/auth/bootstrap",
                      json={"email": "admin@example.com", "password": PASSWORD, "setup_token": token})
    assert boot.status_code == 201, boot.text
    login = httpx.post(server.url + "/auth/token", json={"email": "admin@example.com", "password": PASSWORD})
    assert login.status_code == 200
    me = httpx.get(server.url + "/api/me", headers={"Authorization": f"Bearer {login.json()['access_token']}"})
    assert me.json()["id"] == boot.json()["user"]["id"]
    after = run_agnes(["setup-token"], data_dir)
    assert after.returncode == 1 and "Setup is complete" in after.stderr


def test_reset_password_recovers_a_locked_out_admin(server: LiveServer, data_dir: Path):
    token = run_agnes(["setup-token"], data_dir).stdout.strip()
    httpx.post(server.url + "/auth/bootstrap",
               json={"email": "admin@example.com", "password": PASSWORD, "setup_token": token})
    weak = run_agnes(["users", "reset-password", "admin@example.com", "--password-stdin"], data_dir, input="short\n")
    assert weak.returncode == 2 and "weak_password" in weak.stderr
    missing = run_agnes(["users", "reset-password", "nobody@example.com", "--password-stdin"], data_dir,
                        input="a-new-long-passphrase\n")
    assert missing.returncode == 2 and "user_not_found" in missing.stderr
    ok = run_agnes(["users", "reset-password", "admin@example.com", "--password-stdin"], data_dir,
                   input="a-new-long-passphrase\n")
    assert ok.returncode == 0, ok.stderr
    with sqlite3.connect(data_dir / "state" / "agnes.sqlite") as conn:
        audited = conn.execute("SELECT actor, actor_user_id, target, detail FROM audit_log "
                               "WHERE action = 'user_updated' ORDER BY id").fetchall()
    assert audited == [("cli", None, "user:1", '{"active":true,"password":"changed"}')]  # one, by the CLI
    login = httpx.post(server.url + "/auth/token",
                       json={"email": "admin@example.com", "password": "a-new-long-passphrase"})
    assert login.status_code == 200


def test_version_command(data_dir: Path):
    out = run_agnes(["version"], data_dir, AGNES_VERSION="2026.04.3", AGNES_CHANNEL="stable", AGNES_COMMIT="abc1234")
    assert out.returncode == 0 and "2026.04.3" in out.stdout and "stable" in out.stdout and "abc1234" in out.stdout
    bad = run_agnes(["version"], data_dir, AGNES_CHANNEL="beta")
    assert bad.returncode == 2 and "AGNES_CHANNEL='beta'" in bad.stderr and "hint" in bad.stderr


def test_bad_config_refuses_to_start_naming_file_line_key(data_dir: Path):
    (data_dir / "config").mkdir()
    (data_dir / "config" / "instance.yaml").write_text("server:\n  host: 127.0.0.1\n  port: eighty\n")
    result = run_agnes(["serve", "--port", "1"], data_dir)
    assert result.returncode == 2
    assert "instance.yaml line 3" in result.stderr and "server.port" in result.stderr
    assert "hint" in result.stderr


def test_newer_schema_refuses_to_start(data_dir: Path):
    assert run_agnes(["setup-token"], data_dir).returncode == 0  # creates and migrates the control plane
    db = data_dir / "state" / "agnes.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 999")
    before = db.read_bytes()
    result = run_agnes(["serve", "--port", "1"], data_dir)
    assert result.returncode == 2
    assert "schema_too_new" in result.stderr and "999" in result.stderr and "restore" in result.stderr.lower()
    assert db.read_bytes() == before


def test_short_secret_refuses_to_start(data_dir: Path):
    result = run_agnes(["serve", "--port", "1"], data_dir, JWT_SECRET_KEY="too-short")
    assert result.returncode == 2 and "JWT_SECRET_KEY" in result.stderr and "secret_too_short" in result.stderr


def test_changed_encryption_key_refuses_until_reset(data_dir: Path):
    key_a, key_b = "a" * 40, "b" * 40
    assert run_agnes(["setup-token"], data_dir, AGNES_ENCRYPTION_KEY=key_a).returncode == 0
    refused = run_agnes(["setup-token"], data_dir, AGNES_ENCRYPTION_KEY=key_b)
    assert refused.returncode == 2 and "encryption_key_mismatch" in refused.stderr
    assert "AGNES_ENCRYPTION_KEY" in refused.stderr
    assert run_agnes(["secrets", "reset-encryption-key"], data_dir).returncode == 1  # needs --yes
    assert run_agnes(["secrets", "reset-encryption-key", "--yes"], data_dir,
                     AGNES_ENCRYPTION_KEY=key_b).returncode == 0
    assert run_agnes(["setup-token"], data_dir, AGNES_ENCRYPTION_KEY=key_b).returncode == 0


def test_two_processes_starting_together_share_secrets_and_token(data_dir: Path):
    servers = [LiveServer(data_dir) for _ in range(2)]
    try:
        threads = [threading.Thread(target=s.wait_ready) for s in servers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        token = (data_dir / "state" / "setup-token").read_text().strip()
        for s in servers:
            assert token in s.log.read_text()
        boot = httpx.post(servers[0].url + "/auth/bootstrap",
                          json={"email": "admin@example.com", "password": PASSWORD, "setup_token": token})
        assert boot.status_code == 201
        # The JWT from one process is valid on the other: one secret, created once.
        me = httpx.get(servers[1].url + "/api/me",
                       headers={"Authorization": f"Bearer {boot.json()['access_token']}"})
        assert me.status_code == 200
        assert httpx.get(servers[1].url + "/api/health").json()["setup_required"] is False
        backups = list((data_dir / "state" / "backups").glob("*.sqlite"))
        assert backups == []  # fresh database: nothing to back up
    finally:
        for s in servers:
            s.stop()


def test_make_run_serves_setup_mode_on_the_embedded_defaults(tmp_path: Path):
    """README's first command, as written: `make run` serves on the embedded defaults (no Redis)."""
    import os
    import signal
    import subprocess
    import time

    from tests.helpers import agnes_env, free_port

    root = Path(__file__).resolve().parents[2]
    port, data = free_port(), tmp_path / "data"
    env = {k: v for k, v in agnes_env(data).items() if k != "DATA_DIR"}  # make run's own default is ./data
    log = (tmp_path / "make-run.log").open("w")
    proc = subprocess.Popen(["make", "-C", str(root), "run", f"PORT={port}", f"DATA_DIR={data}"], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "make-run.log").read_text()
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, (tmp_path / "make-run.log").read_text()
                time.sleep(0.2)
        body = health.json()
        assert health.status_code == 200 and body["setup_required"] is True, body
        assert (data / "state" / "agnes.sqlite").is_file() and (data / "state" / "setup-token").is_file()
        assert "jobs run in this server process" in (tmp_path / "make-run.log").read_text()  # no Redis needed
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
