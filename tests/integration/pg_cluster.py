"""A throwaway PostgreSQL cluster with password (scram-sha-256) auth, for tests that must prove a
password is really checked: a trust-auth server would accept a wrong one without a word.

`initdb`/`pg_ctl` come from PATH or /usr/lib/postgresql/<version>/bin (Debian/Ubuntu). initdb refuses
to run as root: as root, the cluster runs as the `postgres` user (created by the Debian package).
With `CI` set, a cluster that cannot be started fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import free_port

SUPERUSER = "agnes_super"
AUTH = "scram-sha-256"  # for every connection, local and TCP


def pg_bin_dir() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    return versions[-1].parent if versions else None


def unavailable(why: str) -> None:
    """Skip on a developer machine; fail in CI, where the suite must prove this for real."""
    message = f"{why} (install the postgresql package: apt-get install postgresql; .ci/run does)"
    if os.environ.get("CI"):
        pytest.fail("CI is set, so this is a failure, not a skip: " + message)
    pytest.skip(message)


@dataclass
class PgCluster:
    bin: Path
    folder: Path
    port: int
    superuser_password: str
    run_as: str | None  # OS user the server runs as (None: this process's user)

    def _run(self, args: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        extra = {"user": self.run_as, "group": pwd.getpwnam(self.run_as).pw_gid, "extra_groups": []} \
            if self.run_as else {}
        return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=self.folder,
                              **extra, **kw)  # type: ignore[arg-type]

    def psql(self, sql: str, *, database: str = "postgres") -> str:
        """Run `sql` as the superuser over TCP (password auth, like every client of this cluster)."""
        env = {**os.environ, "PGPASSWORD": self.superuser_password, "PGCONNECT_TIMEOUT": "10"}
        done = subprocess.run([str(self.bin / "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                               "-p", str(self.port), "-U", SUPERUSER, "-d", database, "-At", "-c", sql],
                              capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 0, f"psql failed: {done.stderr}"
        return done.stdout

    def hba_rules(self) -> list[str]:
        text = (self.folder / "data" / "pg_hba.conf").read_text()
        return [line.split() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]

    def stop(self) -> None:
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop"])


def start_cluster() -> Iterator[PgCluster]:
    """Yield a running cluster on a free 127.0.0.1 port; stop it and delete its files afterwards."""
    bin_dir = pg_bin_dir()
    if bin_dir is None or not (bin_dir / "pg_ctl").exists() or not (bin_dir / "psql").exists():
        unavailable("PostgreSQL server binaries (initdb, pg_ctl, psql) were not found")
        return
    run_as = None
    if os.geteuid() == 0:  # initdb: "cannot be run as root"
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            unavailable("running as root and there is no `postgres` user to run initdb as")
            return
        run_as = "postgres"
    folder = Path(tempfile.mkdtemp(prefix="agnes-pg-"))  # not under pytest's root-only tmp: the server reads it
    cluster = PgCluster(bin_dir, folder, free_port(), "super-" + os.urandom(8).hex(), run_as)
    try:
        if run_as:
            shutil.chown(folder, run_as, pwd.getpwnam(run_as).pw_gid)
        pwfile = folder / "superuser-password"
        pwfile.write_text(cluster.superuser_password + "\n")
        if run_as:
            shutil.chown(pwfile, run_as)
        init = cluster._run([str(bin_dir / "initdb"), "-D", str(folder / "data"), "-U", SUPERUSER,
                             f"--pwfile={pwfile}", f"--auth={AUTH}", "-E", "UTF8", "--locale=C",
                             "--no-sync"])
        if init.returncode != 0:
            unavailable(f"initdb failed: {init.stderr.strip()[-500:]}")
        for attempt in range(3):
            options = (f"-p {cluster.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={folder} "
                       "-c fsync=off -c max_connections=20 -c shared_buffers=16MB")
            start = cluster._run([str(bin_dir / "pg_ctl"), "-D", str(folder / "data"), "-l",
                                  str(folder / "server.log"), "-o", options, "-w", "-t", "60", "start"])
            if start.returncode == 0:
                break
            cluster.port = free_port()  # another process took the port between free_port() and start
            time.sleep(0.2 * (attempt + 1))
        else:
            log = (folder / "server.log").read_text() if (folder / "server.log").exists() else ""
            unavailable(f"pg_ctl start failed: {start.stderr.strip()[-300:]} {log[-500:]}")
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)
