"""Forward-only migrations of the control plane, run before serving.

Server and worker both call `migrate()` at start, so check + backup + apply
run under an exclusive flock beside the database: the second process waits,
then finds the schema current. The version is `PRAGMA user_version`, mirrored
in `schema_migrations`; each migration commits together with its bookkeeping,
so a failure leaves the previous version. A non-empty database is first copied
with SQLite's online backup API; a newer schema is refused without touching it.
"""

from __future__ import annotations

import fcntl
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from agnes.control.db import utcnow_iso
from agnes.errors import StartupError
from agnes.settings import build_info

PACKAGE_MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_USER_OBJECTS = "SELECT count(*) FROM sqlite_schema WHERE name NOT LIKE 'sqlite%'"


class MigrationError(RuntimeError):
    """A migration script failed; the database was left at the previous version."""


class MigrationReport(msgspec.Struct, frozen=True):
    """What `migrate()` did; `applied` is empty (and backup_path None) when already current."""

    from_version: int
    to_version: int
    backup_path: Path | None
    applied: list[str]


def load_migrations(migrations_dir: Path | None = None) -> list[tuple[int, str, str]]:
    """(version, name, sql) sorted; versions must run 1..N without gaps."""
    folder = migrations_dir or PACKAGE_MIGRATIONS
    found = []
    for path in folder.iterdir():
        m = _NAME.match(path.name)
        if m:
            found.append((int(m.group(1)), path.stem, path.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations in {folder} must be numbered 0001.. without gaps, got {versions}")
    return found


LATEST_SCHEMA = len(load_migrations())


@contextmanager
def _migration_lock(db_path: Path, timeout: float) -> Iterator[None]:
    """Exclusive flock on `<db>.migrate.lock`; waits up to `timeout` seconds."""
    lock_path = db_path.with_name(db_path.name + ".migrate.lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StartupError("data_dir_unusable", f"Cannot create the lock file {lock_path}: {exc}") from exc
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StartupError(
                        "not_ready",
                        f"Another Agnes process has held the migration lock {lock_path} for more than "
                        f"{timeout:g}s while migrating {db_path}.",
                        hint="Wait for the other server/worker to finish starting, then run `agnes serve` (or "
                        "`docker compose up -d`) again. If no other Agnes process is running, stop the hung one "
                        "(the lock is released when it exits).",
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _inspect(db_path: Path) -> tuple[int, bool]:
    """(user_version, has user tables) read through a read-only connection."""
    if not db_path.exists():
        return 0, False
    conn = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        (objects,) = conn.execute(_USER_OBJECTS).fetchone()
        return int(version), objects > 0
    finally:
        conn.close()


def current_version(db_path: Path) -> int:
    """The schema version of the database at `db_path` (0 when it does not exist)."""
    return _inspect(Path(db_path))[0]


def _fsync(path: Path) -> None:  # a file, or a directory so a rename into it is durable
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_backup(conn: sqlite3.Connection, backups_dir: Path, from_v: int, to_v: int) -> Path:
    """Consistent copy via the online backup API: 0600, fsync'd, renamed into place."""
    backups_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    base = f"agnes-v{from_v}-to-v{to_v}-{stamp}"
    final = backups_dir / f"{base}.sqlite"
    for n in range(1, 1000):  # two upgrades within one second: keep both
        if not final.exists():
            break
        final = backups_dir / f"{base}-{n}.sqlite"
    tmp = backups_dir / f".{final.name}.tmp"
    tmp.unlink(missing_ok=True)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    dest = sqlite3.connect(tmp)
    try:
        conn.backup(dest)
        dest.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal/-shm
    finally:
        dest.close()
    _fsync(tmp)  # created 0600 above; sqlite keeps the mode of an existing file
    os.replace(tmp, final)
    _fsync(backups_dir)
    return final


def _apply(conn: sqlite3.Connection, version: int, name: str, sql: str) -> None:
    """One migration + its bookkeeping in one transaction.

    `executescript` commits an open transaction *before* running, not after: so
    the script starts with our BEGIN IMMEDIATE and all up to COMMIT is atomic
    (scripts must not contain BEGIN/COMMIT). Foreign keys are off meanwhile
    (SQLite's table-rebuild recipe) and verified by foreign_key_check.
    """
    conn.execute("PRAGMA foreign_keys=OFF")
    try:
        conn.executescript("BEGIN IMMEDIATE;\n" + sql)
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        conn.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
            (version, name, utcnow_iso()),
        )
        conn.execute(f"PRAGMA user_version = {int(version)}")
        broken = conn.execute("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise sqlite3.IntegrityError(f"foreign key violations after migration: {broken[:5]}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.execute("PRAGMA foreign_keys=ON")


_BACKUP_NAME = re.compile(r"^agnes-v(\d+)-to-v(\d+)-(\d{8}T\d{6}Z)(?:-(\d+))?\.sqlite$")


def _backup_before(backups_dir: Path, db_v: int, latest: int) -> Path | None:
    """The newest backup taken by an upgrade *to* `db_v` from a schema this code can run (<= latest).

    A newer image may have upgraded v2 -> v5 in one go, so `agnes-v{latest}-to-v{db_v}` need not exist.
    """
    try:
        names = [p.name for p in backups_dir.iterdir() if p.is_file()]
    except OSError:
        return None
    found = []
    for name in names:
        m = _BACKUP_NAME.match(name)
        if m and int(m.group(2)) == db_v and int(m.group(1)) <= latest:
            found.append((m.group(3), int(m.group(4) or 0), int(m.group(1)), name))
    return backups_dir / max(found)[3] if found else None


def _too_new(db_path: Path, backups_dir: Path, db_v: int, latest: int) -> StartupError:
    backup = _backup_before(backups_dir, db_v, latest)
    what = (f"The control plane at {db_path} is at schema {db_v}, but this Agnes ({build_info().version}) "
            f"knows schema {latest}.")
    if backup is not None:
        return StartupError(
            "schema_too_new",
            f"{what} The backup taken before that upgrade is {backup}.",
            hint="Start the newer Agnes again (in Docker: set AGNES_IMAGE_TAG back to it, then "
            "`docker compose up -d`). To stay on this version instead: stop server and worker "
            f"(`docker compose stop app worker`), move {db_path.name} (and its -wal/-shm files) aside, copy "
            f"{backup} to {db_path}, then start again (`docker compose up -d` or `agnes serve`); control-plane "
            "changes made since that upgrade are lost.",
        )
    return StartupError(
        "schema_too_new",
        f"{what} No backup from before that upgrade (agnes-v<N>-to-v{db_v}-*.sqlite with N <= {latest}) "
        f"exists in {backups_dir}.",
        hint="Start the newer Agnes again (in Docker: set AGNES_IMAGE_TAG back to it, then `docker compose up -d`): "
        "this version cannot use the data. To go back anyway, restore a copy of the whole data volume taken "
        "before the upgrade (docs/releases.md, \"Backup and restore\").",
    )


def migrate(
    db_path: Path, backups_dir: Path, *, lock_timeout: float = 120.0, migrations_dir: Path | None = None
) -> MigrationReport:
    """Bring the control plane to the newest schema this code knows."""
    db_path, backups_dir = Path(db_path), Path(backups_dir)
    migrations = load_migrations(migrations_dir)
    latest = len(migrations)
    try:
        db_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError("data_dir_unusable", f"Cannot create {db_path.parent}: {exc}") from exc
    with _migration_lock(db_path, lock_timeout):
        from_v, has_tables = _inspect(db_path)
        if from_v > latest:
            raise _too_new(db_path, backups_dir, from_v, latest)
        if not db_path.exists():  # users, hashes, secrets: owner only (-wal/-shm inherit it)
            os.close(os.open(db_path, os.O_WRONLY | os.O_CREAT, 0o600))
        conn = sqlite3.connect(db_path, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")  # persistent; foreign keys: see _apply
            pending = [m for m in migrations if m[0] > from_v]
            backup = None
            if pending and (from_v > 0 or has_tables):
                backup = _write_backup(conn, backups_dir, from_v, latest)
            applied: list[str] = []
            for version, name, sql in pending:
                try:
                    _apply(conn, version, name, sql)
                except sqlite3.Error as exc:
                    at = f" (backup: {backup})" if backup else ""
                    raise MigrationError(
                        f"Migration {name} failed on {db_path}: {exc}. The control plane was left "
                        f"at schema {version - 1}{at}."
                    ) from exc
                applied.append(name)
        finally:
            conn.close()
    return MigrationReport(from_version=from_v, to_version=latest, backup_path=backup, applied=applied)


def restore_backup(backup_path: Path, db_path: Path, *, lock_timeout: float = 120.0) -> int:
    """Copy a backup over the control plane (backup API, under the migration lock).

    Returns the schema version now in place. Stop server and worker first.
    """
    backup_path, db_path = Path(backup_path), Path(db_path)
    if not backup_path.is_file():
        raise FileNotFoundError(f"backup {backup_path} does not exist")
    db_path.parent.mkdir(parents=True, exist_ok=True)
    with _migration_lock(db_path, lock_timeout):
        src = sqlite3.connect(f"{backup_path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            ok = src.execute("PRAGMA quick_check").fetchone()[0]
            if ok != "ok":
                raise sqlite3.DatabaseError(f"backup {backup_path} is damaged: {ok}")
            dest = sqlite3.connect(db_path, isolation_level=None)
            try:
                src.backup(dest)
                dest.execute("PRAGMA journal_mode=WAL")
            finally:
                dest.close()
        finally:
            src.close()
    return current_version(db_path)
