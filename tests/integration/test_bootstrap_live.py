"""Bootstrap against real `agnes serve` processes: while migrations hold the lock, and two servers racing."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from pathlib import Path

import httpx

from tests.conftest import ADMIN_PASSWORD, setup_token_of
from tests.helpers import LiveServer

PRESET = "provisioned-setup-token-0123456789"


def _holds_open(pid: int, path: Path) -> bool:
    """Whether process `pid` has `path` open (it reached the migration lock and waits on it)."""
    try:
        return any(os.path.realpath(f"/proc/{pid}/fd/{fd}") == str(path.resolve())
                   for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


def _bootstrap(url: str, email: str, token: str) -> httpx.Response:
    return httpx.post(url + "/auth/bootstrap", json={"email": email, "password": ADMIN_PASSWORD,
                                                     "setup_token": token}, timeout=60)


def test_bootstrap_is_refused_until_migrations_are_done(data_dir: Path) -> None:
    state = data_dir / "state"
    state.mkdir(mode=0o700)
    lock_path = state / "agnes.sqlite.migrate.lock"  # control/migrate.py:_migration_lock
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)  # "another process is migrating"
    server = LiveServer(data_dir, AGNES_SETUP_TOKEN=PRESET)
    try:
        deadline = time.monotonic() + 60
        while not _holds_open(server.proc.pid, lock_path):  # the server waits at the lock now
            assert server.proc.poll() is None, server.log.read_text()
            assert time.monotonic() < deadline, f"the server never reached the migration lock:\n{server.log.read_text()}"
            time.sleep(0.05)
        for _ in range(10):
            try:
                resp = _bootstrap(server.url, "early@example.com", PRESET)
            except httpx.TransportError:  # not listening before migrations are done
                pass
            else:
                assert resp.status_code == 503 and resp.json()["error"]["code"] == "not_ready", resp.text
            time.sleep(0.1)
        assert server.proc.poll() is None
        assert not (state / "agnes.sqlite").exists() or _users(state / "agnes.sqlite") == 0
    finally:
        os.close(fd)  # releases the flock: the server migrates and starts
    try:
        server.wait_ready(timeout=120)
        resp = _bootstrap(server.url, "admin@example.com", PRESET)
        assert resp.status_code == 201, resp.text
        assert _users(state / "agnes.sqlite") == 1
    finally:
        server.stop()


def _users(db: Path, where: str = "") -> int:
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return conn.execute(f"SELECT count(*) FROM users {where}").fetchone()[0]  # noqa: S608 - test constants
    finally:
        conn.close()


def test_two_servers_on_one_data_dir_create_exactly_one_admin(data_dir: Path) -> None:
    """Two processes, one control plane, bootstraps fired at both at once (several per server, so the
    check-and-insert really overlaps): SQLite's write lock (BEGIN IMMEDIATE) serializes them. Exactly one
    wins (201); every other caller sees the winner's admin and gets 409 — never 403 for the consumed token,
    because the user check comes before the token check in the same transaction."""
    servers = [LiveServer(data_dir), LiveServer(data_dir)]
    per_server = 4
    try:
        for server in servers:
            server.wait_ready(timeout=120)
        token = setup_token_of(data_dir)
        attempts = len(servers) * per_server
        barrier = threading.Barrier(attempts)
        results: dict[int, httpx.Response | BaseException] = {}

        def fire(i: int) -> None:
            barrier.wait()
            try:
                results[i] = _bootstrap(servers[i % len(servers)].url, f"admin{i}@example.com", token)
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                results[i] = exc

        threads = [threading.Thread(target=fire, args=(i,)) for i in range(attempts)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=180)
        responses = [results.get(i) for i in range(attempts)]
        assert all(isinstance(r, httpx.Response) for r in responses), responses
        codes = sorted(r.status_code for r in responses)  # type: ignore[union-attr]
        assert codes == [201] + [409] * (attempts - 1), [(r.status_code, r.text) for r in responses]  # type: ignore[union-attr]
        assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {  # type: ignore[union-attr]
            "already_bootstrapped"}
        db = data_dir / "state" / "agnes.sqlite"
        assert _users(db) == 1 and _users(db, "WHERE role = 'admin'") == 1
        assert not (data_dir / "state" / "setup-token").exists()
        for server in servers:  # both processes see that setup is over
            assert httpx.get(server.url + "/api/health", timeout=30).json()["setup_required"] is False
    finally:
        for server in servers:
            server.stop()


def test_setup_token_reaches_stderr_once_even_at_log_level_error(data_dir: Path) -> None:
    server = LiveServer(data_dir, AGNES_LOG_LEVEL="error")  # stdout and stderr both go to server.log
    try:
        server.wait_ready(timeout=120)
        token = setup_token_of(data_dir)
        log = server.log.read_text()
        assert log.count(token) == 1, log
        assert "agnes setup-token" in log and "/auth/bootstrap" in log
        # AGNES_LOG_LEVEL governs the app's own logs too (Litestar must not reset the root logger to INFO).
        assert "jobs run in this server process" not in log, log  # an INFO line of agnes.jobs
    finally:
        server.stop()
