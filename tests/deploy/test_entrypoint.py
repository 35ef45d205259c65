"""The container's entrypoint and health check, run on the host: same scripts, same env contract.

What differs from the container: PID 1 is not tini, and Python lives under /root on our machines,
so agnes itself can only run as root here (AGNES_UID=0); the privilege drop to uid 10001 is checked
with a shell command instead, and the refusal path as uid 10001 needs no Python at all.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = str(ROOT / "deploy" / "docker" / "entrypoint.sh")
HEALTHCHECK = ROOT / "deploy" / "docker" / "healthcheck.py"
AS_10001 = ["setpriv", "--reuid=10001", "--regid=10001", "--clear-groups"]
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create root-owned volumes and drop to 10001")


@pytest.fixture
def volume() -> Iterator[Path]:
    """A fresh directory that uid 10001 can reach (pytest's tmp_path is under a 0700 folder)."""
    parent = Path(tempfile.mkdtemp(prefix="agnes-volume-", dir="/tmp"))
    os.chmod(parent, 0o755)  # noqa: S103 - a test volume other users must reach
    data = parent / "data"
    data.mkdir(mode=0o755)
    yield data
    shutil.rmtree(parent, ignore_errors=True)


def as_10001(volume: Path) -> list[str]:
    """setpriv to uid 10001 + a copy of the entrypoint it can reach: the checkout may sit under a home
    folder other users cannot enter (GitHub-hosted runners), /tmp/agnes-volume-* is 0755."""
    copy = volume.parent / "entrypoint.sh"
    shutil.copy2(ENTRYPOINT, copy)
    copy.chmod(0o755)
    return [*AS_10001, str(copy)]


def container_env(data: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGNES_", "JWT_", "SESSION_", "REDIS_"))}
    env.update({"PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}", "DATA_DIR": str(data),
                "HOME": str(data.parent), "AGNES_HOST": "127.0.0.1"})  # the image says 0.0.0.0; tests stay local
    env.update(extra)
    return env


def test_serve_is_the_default_command_and_sigterm_reaches_agnes(volume: Path):
    port = free_port()
    env = container_env(volume, AGNES_PORT=str(port), AGNES_UID="0", AGNES_GID="0")
    log = volume.parent / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen([ENTRYPOINT], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
        assert b"serve" in cmdline and not any(c.endswith(b"entrypoint.sh") for c in cmdline)  # exec'd, no wrapper
        check = subprocess.run([sys.executable, str(HEALTHCHECK)], env={**env, "AGNES_PORT": str(port)},
                               capture_output=True, text=True, timeout=10)
        assert check.returncode == 0 and "HTTP 200" in check.stdout
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        assert "Application shutdown complete" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (volume / "state" / "agnes.sqlite").is_file()


def test_healthcheck_fails_without_a_server(volume: Path):
    res = subprocess.run([sys.executable, str(HEALTHCHECK)], env=container_env(volume, AGNES_PORT=str(free_port())),
                         capture_output=True, text=True, timeout=10)
    assert res.returncode == 1 and "unhealthy" in res.stderr


def test_worker_command_runs_agnes_worker(volume: Path):
    res = subprocess.run([ENTRYPOINT, "worker"], env=container_env(volume, AGNES_UID="0", AGNES_GID="0"),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "REDIS_URL is not set" in res.stderr


def test_started_as_root_it_fixes_ownership_and_drops_to_10001(volume: Path):
    (volume / "state").mkdir(mode=0o700)
    (volume / "state" / "agnes.sqlite").write_text("root-owned, as after a `docker compose exec` as root")
    res = subprocess.run([ENTRYPOINT, "sh", "-c", 'id -u; id -G; touch "$DATA_DIR/state/probe"'],
                         env=container_env(volume), capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["10001", "10001"]  # no supplementary groups, never root
    assert "giving" in res.stderr and "owned by 0:0" in res.stderr
    for path in (volume, volume / "state", volume / "state" / "agnes.sqlite", volume / "state" / "probe"):
        assert (path.stat().st_uid, path.stat().st_gid) == (10001, 10001), path


def test_fix_permissions_command(volume: Path):
    res = subprocess.run([ENTRYPOINT, "fix-permissions"], env=container_env(volume), capture_output=True,
                         text=True, timeout=30)
    assert res.returncode == 0 and volume.stat().st_uid == 10001, res.stderr
    refused = subprocess.run([*as_10001(volume), "fix-permissions"], env=container_env(volume),
                             capture_output=True, text=True, timeout=30)
    assert refused.returncode == 64 and "--user 0" in refused.stderr


@pytest.mark.parametrize("broken", ["root-owned volume", "root-owned file inside"])
def test_as_10001_an_unwritable_volume_is_explained(volume: Path, broken: str):
    if broken == "root-owned file inside":
        os.chown(volume, 10001, 10001)
        (volume / "state").mkdir()
        os.chown(volume / "state", 10001, 10001)
        (volume / "state" / "agnes.sqlite").write_text("x")  # root-owned, 0644
        bad = volume / "state" / "agnes.sqlite"
    else:
        bad = volume
    res = subprocess.run([*as_10001(volume), "serve"], env=container_env(volume), capture_output=True,
                         text=True, timeout=30)
    assert res.returncode == 78, res.stderr
    assert f"cannot write {bad} as uid 10001 (owner 0:0" in res.stderr
    assert "sudo chown -R 10001:10001 ./data" in res.stderr
    assert "docker compose run --rm --user 0 app fix-permissions" in res.stderr


def test_a_shell_still_starts_on_a_broken_volume_for_inspection(volume: Path):
    res = subprocess.run([*as_10001(volume), "sh", "-c", "echo inspecting"], env=container_env(volume),
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0 and res.stdout.strip() == "inspecting"


def test_duckdb_extensions_install_at_build_time_without_network(tmp_path: Path):
    """The Dockerfile's extension step, run as written, in a network namespace with no interfaces up."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", "")
    line = next(ln for ln in text.splitlines() if ln.startswith("RUN --network=none "))
    command = line.removeprefix("RUN --network=none ")
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path)}
    res = subprocess.run(["unshare", "--net", "sh", "-c", command], env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0 and "extensions ok" in res.stdout, res.stderr
    installed = {p.name for p in (tmp_path / ".duckdb" / "extensions").rglob("*.duckdb_extension")}
    assert {"postgres_scanner.duckdb_extension", "sqlite_scanner.duckdb_extension"} <= installed or \
        {"postgres.duckdb_extension", "sqlite.duckdb_extension"} <= installed, installed
