"""`.ci/run` installs missing packages as root, through sudo on a non-root runner (GitHub-hosted).

apt-get, sudo, id, make and redis-server are stand-ins on PATH that log their calls: the test
proves who runs what, without installing anything or running the suite.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def fake_bin(tmp_path: Path, uid: int, sudo: bool) -> tuple[Path, Path]:
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for real in ("dirname", "env", "cat"):
        (bin_dir / real).symlink_to(shutil.which(real))
    stubs = {
        "id": f'[ "$1" = -u ] && echo {uid} || /usr/bin/id "$@"',
        "apt-get": f'echo "apt-get as_root=${{AS_ROOT:-$([ {uid} = 0 ] && echo 1 || echo 0)}} $*" >> {log}',
        "make": f'echo "make $*" >> {log}',
        "redis-server": f'echo "redis-server" >> {log}',
    }
    if sudo:
        stubs["sudo"] = f'echo "sudo $*" >> {log}; AS_ROOT=1 exec "$@"'
    for name, body in stubs.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return bin_dir, log


def run_ci(bin_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": str(bin_dir), "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(["/bin/bash", str(ROOT / ".ci" / "run")], env=env, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize(("uid", "via_sudo"), [(1001, True), (0, False)])
def test_packages_are_installed_as_root(tmp_path: Path, uid: int, via_sudo: bool):
    bin_dir, log = fake_bin(tmp_path, uid, sudo=True)
    res = run_ci(bin_dir)
    assert res.returncode == 0, res.stdout + res.stderr
    calls = log.read_text().splitlines()
    installs = [c for c in calls if c.startswith("apt-get") and " install " in c]
    assert installs and all(c.startswith("apt-get as_root=1 install -y -qq") for c in installs), calls
    assert "nodejs npm" in installs[0] and "jq" in installs[0] and "curl" in installs[0]
    assert any(c.startswith("sudo ") for c in calls) is via_sudo, calls  # root needs no sudo
    assert calls[-1] == "make test"


def test_a_non_root_runner_without_sudo_is_told_what_to_install(tmp_path: Path):
    bin_dir, log = fake_bin(tmp_path, 1001, sudo=False)
    res = run_ci(bin_dir)
    assert res.returncode == 1 and "needs root or sudo" in res.stderr and "jq" in res.stderr
    assert not log.exists() or "apt-get" not in log.read_text()
