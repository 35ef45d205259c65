"""Control-plane migrations on real SQLite files, including a real two-process race."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agnes.control.db import ControlPlane
from agnes.control.migrate import (
    LATEST_SCHEMA,
    PACKAGE_MIGRATIONS,
    MigrationError,
    current_version,
    load_migrations,
    migrate,
    restore_backup,
)
from agnes.errors import StartupError

SRC = str(Path(__file__).resolve().parents[2] / "src")
SLOW_SQL = (
    "CREATE TABLE slow AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1500000)"
    " SELECT count(*) AS n FROM c;"
)


def _paths(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "state" / "agnes.sqlite", tmp_path / "state" / "backups"


def _migrations(tmp_path: Path, **extra: str) -> Path:
    """A migrations dir: the package's 0001 plus `extra` files (name -> sql)."""
    folder = tmp_path / "migrations"
    folder.mkdir(exist_ok=True)
    shutil.copy(PACKAGE_MIGRATIONS / "0001_initial.sql", folder / "0001_initial.sql")
    for name, sql in extra.items():
        (folder / name).write_text(sql)
    return folder


def _query(db: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _tables(db: Path) -> set[str]:
    return {r[0] for r in _query(db, "SELECT name FROM sqlite_master WHERE type = 'table'")}


def _v1_with_row(tmp_path: Path) -> tuple[Path, Path]:
    db, backups = _paths(tmp_path)
    migrate(db, backups, migrations_dir=_migrations(tmp_path))
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO settings VALUES ('kept', 'yes', '2026-01-01T00:00:00.000Z')")
    conn.commit()
    conn.close()
    return db, backups


def test_package_migrations_are_numbered() -> None:
    assert LATEST_SCHEMA == len(load_migrations()) >= 1
    assert load_migrations()[0][1] == "0001_initial"


def test_fresh_migrate(tmp_path: Path) -> None:
    db, backups = _paths(tmp_path)
    assert current_version(db) == 0 and not db.exists()  # looking does not create
    report = migrate(db, backups)
    assert (report.from_version, report.to_version, report.backup_path) == (0, LATEST_SCHEMA, None)
    assert report.applied == [name for _, name, _ in load_migrations()]
    assert current_version(db) == LATEST_SCHEMA
    assert _query(db, "PRAGMA journal_mode") == [("wal",)]
    rows = _query(db, "SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
    assert [r[:2] for r in rows] == [(v, n) for v, n, _ in load_migrations()]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r[2]) for r in rows)
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert not backups.exists() or not list(backups.iterdir())


def test_rerun_is_a_noop(tmp_path: Path) -> None:
    db, backups = _paths(tmp_path)
    migrate(db, backups)
    before = db.read_bytes()
    report = migrate(db, backups)
    assert (report.from_version, report.to_version, report.applied, report.backup_path) == (
        LATEST_SCHEMA,
        LATEST_SCHEMA,
        [],
        None,
    )
    assert db.read_bytes() == before
    assert len(_query(db, "SELECT * FROM schema_migrations")) == LATEST_SCHEMA


def test_backup_before_migrate(tmp_path: Path) -> None:
    db, backups = _v1_with_row(tmp_path)
    folder = _migrations(tmp_path, **{"0002_add_notes.sql": "CREATE TABLE notes (id INTEGER PRIMARY KEY);"})
    report = migrate(db, backups, migrations_dir=folder)
    assert (report.from_version, report.to_version, report.applied) == (1, 2, ["0002_add_notes"])
    files = sorted(backups.iterdir())
    assert files == [report.backup_path]
    assert re.fullmatch(r"agnes-v1-to-v2-\d{8}T\d{6}Z\.sqlite", files[0].name)
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert _query(files[0], "PRAGMA user_version") == [(1,)]
    assert _query(files[0], "SELECT key, value FROM settings") == [("kept", "yes")]
    assert "notes" not in _tables(files[0])
    assert _query(files[0], "PRAGMA integrity_check") == [("ok",)]
    assert current_version(db) == 2 and "notes" in _tables(db)


def test_restore_backup(tmp_path: Path) -> None:
    db, backups = _v1_with_row(tmp_path)
    folder = _migrations(tmp_path, **{"0002_add_notes.sql": "CREATE TABLE notes (id INTEGER PRIMARY KEY);"})
    report = migrate(db, backups, migrations_dir=folder)
    _query(db, "DELETE FROM settings")
    assert report.backup_path is not None
    assert restore_backup(report.backup_path, db) == 1
    assert "notes" not in _tables(db)
    assert _query(db, "SELECT key FROM settings") == [("kept",)]
    assert _query(db, "PRAGMA journal_mode") == [("wal",)]


def test_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    db, backups = _paths(tmp_path)
    migrate(db, backups)
    newer = LATEST_SCHEMA + 5
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {newer}")
    conn.close()
    before = (db.read_bytes(), db.stat().st_mtime_ns)
    time.sleep(0.01)
    with pytest.raises(StartupError) as caught:
        migrate(db, backups)
    err = caught.value
    assert err.code == "schema_too_new"
    assert f"schema {newer}" in err.message and f"knows schema {LATEST_SCHEMA}" in err.message
    # no upgrade to `newer` left a backup here: say so instead of naming a file that does not exist
    assert f"No backup from before that upgrade (agnes-v<N>-to-v{newer}-*.sqlite" in err.message
    assert str(backups) in err.message and "Start the newer Agnes again" in err.hint
    assert (db.read_bytes(), db.stat().st_mtime_ns) == before
    assert not backups.exists()
    # only SQLite's own sidecars (left by the read-only look) besides the lock file
    assert {p.name for p in db.parent.iterdir()} <= {
        "agnes.sqlite",
        "agnes.sqlite-wal",
        "agnes.sqlite-shm",
        "agnes.sqlite.migrate.lock",
    }


def test_newer_schema_names_the_real_backup_of_that_upgrade(tmp_path: Path) -> None:
    """A newer image may have jumped v2 -> v{newer}: name the backup that exists, not a guessed name."""
    db, backups = _paths(tmp_path)
    migrate(db, backups)
    newer = LATEST_SCHEMA + 3
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {newer}")
    conn.close()
    backups.mkdir(parents=True, exist_ok=True)
    names = {
        "older": f"agnes-v1-to-v{newer}-20260101T000000Z.sqlite",
        "newest": f"agnes-v2-to-v{newer}-20260301T000000Z.sqlite",  # the one to restore
        "unrunnable": f"agnes-v{LATEST_SCHEMA + 1}-to-v{newer}-20260401T000000Z.sqlite",  # this code is too old for it
        "other_upgrade": f"agnes-v1-to-v{newer - 1}-20260501T000000Z.sqlite",
        "not_a_backup": f"agnes-v1-to-v{newer}-20260601T000000Z.sqlite.tmp",
    }
    for name in names.values():
        (backups / name).write_bytes(b"")
    with pytest.raises(StartupError) as caught:
        migrate(db, backups)
    err = caught.value
    assert err.code == "schema_too_new"
    assert str(backups / names["newest"]) in err.message
    assert f"agnes-v{LATEST_SCHEMA}-to-v{newer}" not in err.message + err.hint
    assert str(backups / names["newest"]) in err.hint and str(db) in err.hint
    assert current_version(db) == newer


def test_broken_migration_rolls_back(tmp_path: Path) -> None:
    db, backups = _v1_with_row(tmp_path)
    broken = (
        "CREATE TABLE partial (x INTEGER);\nINSERT INTO partial VALUES (1);\nINSERT INTO nope VALUES (1);"
    )
    folder = _migrations(tmp_path, **{"0002_broken.sql": broken})
    with pytest.raises(MigrationError, match="0002_broken") as caught:
        migrate(db, backups, migrations_dir=folder)
    assert "schema 1" in str(caught.value)
    assert current_version(db) == 1
    assert "partial" not in _tables(db)
    assert _query(db, "SELECT version FROM schema_migrations") == [(1,)]
    assert _query(db, "SELECT key FROM settings") == [("kept",)]
    assert len(list(backups.glob("agnes-v1-to-v2-*.sqlite"))) == 1


def test_each_migration_is_its_own_transaction(tmp_path: Path) -> None:
    db, backups = _paths(tmp_path)
    folder = _migrations(
        tmp_path,
        **{"0002_good.sql": "CREATE TABLE good (x);", "0003_bad.sql": "CREATE TABLE bad (x); SELECT nope();"},
    )
    with pytest.raises(MigrationError, match="0003_bad"):
        migrate(db, backups, migrations_dir=folder)
    assert current_version(db) == 2
    assert "good" in _tables(db) and "bad" not in _tables(db)


def test_foreign_key_violation_rolls_back(tmp_path: Path) -> None:
    db, backups = _v1_with_row(tmp_path)
    orphan = (
        "INSERT INTO api_tokens (user_id, name, prefix, token_hash, created_at)"
        " VALUES (42, 'n', 'p', 'h', 'x');"
    )
    folder = _migrations(tmp_path, **{"0002_orphan.sql": orphan})
    with pytest.raises(MigrationError, match="foreign key"):
        migrate(db, backups, migrations_dir=folder)
    assert current_version(db) == 1 and _query(db, "SELECT count(*) FROM api_tokens") == [(0,)]


def test_gap_in_migrations_is_a_bug(tmp_path: Path) -> None:
    folder = _migrations(tmp_path, **{"0003_skip.sql": "SELECT 1;"})
    with pytest.raises(RuntimeError, match="without gaps"):
        load_migrations(folder)


def test_lock_timeout(tmp_path: Path) -> None:
    db, backups = _paths(tmp_path)
    db.parent.mkdir(parents=True)
    with open(db.parent / "agnes.sqlite.migrate.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        started = time.monotonic()
        with pytest.raises(StartupError) as caught:
            migrate(db, backups, lock_timeout=0.3)
        assert 0.3 <= time.monotonic() - started < 5
    assert "agnes.sqlite.migrate.lock" in caught.value.message
    assert not db.exists()


CHILD = """
import json, sys, time
from pathlib import Path
from agnes.control.migrate import migrate
db, backups, folder, work, me = sys.argv[1:6]
(Path(work) / f"ready-{me}").touch()
while not (Path(work) / "go").exists():
    time.sleep(0.002)
start = time.time()
r = migrate(Path(db), Path(backups), migrations_dir=Path(folder))
print(json.dumps({"from": r.from_version, "to": r.to_version, "applied": r.applied,
                  "backup": str(r.backup_path) if r.backup_path else None,
                  "start": start, "end": time.time()}))
"""


def test_two_processes_race_only_one_migrates(tmp_path: Path) -> None:
    db, backups = _v1_with_row(tmp_path)
    folder = _migrations(tmp_path, **{"0002_slow.sql": SLOW_SQL})
    env = {**os.environ, "PYTHONPATH": SRC}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(db), str(backups), str(folder), str(tmp_path), str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready-{i}").exists() for i in range(2)):
        assert time.monotonic() < deadline, "children never became ready"
        time.sleep(0.01)
    (tmp_path / "go").touch()
    results = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        assert "already exists" not in err
        results.append(json.loads(out))
    winner, loser = sorted(results, key=lambda r: -len(r["applied"]))
    assert winner["applied"] == ["0002_slow"] and winner["from"] == 1 and winner["backup"]
    assert loser["applied"] == [] and loser["from"] == 2 and loser["backup"] is None
    assert loser["start"] < winner["end"], "the processes did not overlap; the race was not exercised"
    assert current_version(db) == 2
    assert _query(db, "SELECT version FROM schema_migrations ORDER BY version") == [(1,), (2,)]
    assert len(list(backups.iterdir())) == 1


WORKER = """
import asyncio, sys
from pathlib import Path
from agnes.control.db import ControlPlane, utcnow_iso

async def main():
    cp = await ControlPlane.open(Path(sys.argv[1]), pool_size=2)
    async def bump():
        async with cp.transaction() as conn:
            async with conn.execute("SELECT value FROM settings WHERE key = 'counter'") as cur:
                (value,) = await cur.fetchone()
            await asyncio.sleep(0.001)
            await conn.execute("UPDATE settings SET value = ? WHERE key = 'counter'", (str(int(value) + 1),))
    await asyncio.gather(*(bump() for _ in range(25)))
    await cp.close()

asyncio.run(main())
"""


async def test_server_and_worker_processes_serialize(tmp_path: Path) -> None:
    db, backups = _paths(tmp_path)
    migrate(db, backups)
    cp = await ControlPlane.open(db)
    try:
        await cp.execute("INSERT INTO settings VALUES ('counter', '0', 'now')")
        env = {**os.environ, "PYTHONPATH": SRC}
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", WORKER, str(db), env=env, stderr=asyncio.subprocess.PIPE
        )
        for _ in range(25):
            async with cp.transaction() as conn:
                async with conn.execute("SELECT value FROM settings WHERE key = 'counter'") as cur:
                    (value,) = await cur.fetchone()
                await asyncio.sleep(0.001)
                await conn.execute(
                    "UPDATE settings SET value = ? WHERE key = 'counter'", (str(int(value) + 1),)
                )
        _, err = await asyncio.wait_for(child.communicate(), timeout=120)
        assert child.returncode == 0, err.decode()
        assert await cp.fetch_one("SELECT value FROM settings WHERE key = 'counter'") == {"value": "50"}
    finally:
        await cp.close()
