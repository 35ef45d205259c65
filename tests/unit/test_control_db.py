"""ControlPlane pool: pragmas, dict helpers, rollback, and serialized writers."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path

import pytest

from agnes.control.db import ControlPlane, Executed, utcnow_iso
from agnes.control.migrate import LATEST_SCHEMA, migrate


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "state" / "agnes.sqlite"
    migrate(path, tmp_path / "state" / "backups")
    return path


@pytest.fixture
async def cp(db_path: Path):
    control = await ControlPlane.open(db_path)
    yield control
    await control.close()


async def _counter(cp: ControlPlane) -> int:
    row = await cp.fetch_one("SELECT value FROM settings WHERE key = 'counter'")
    assert row is not None
    return int(row["value"])


async def _increment(cp: ControlPlane) -> None:
    """Read-modify-write with a yield in between: lost updates show up if writers overlap."""
    async with cp.transaction() as conn:
        async with conn.execute("SELECT value FROM settings WHERE key = 'counter'") as cur:
            (value,) = await cur.fetchone()
        await asyncio.sleep(0.001)
        await conn.execute(
            "UPDATE settings SET value = ?, updated_at = ? WHERE key = 'counter'",
            (str(int(value) + 1), utcnow_iso()),
        )


async def _seed_counter(cp: ControlPlane) -> None:
    await cp.execute(
        "INSERT INTO settings (key, value, updated_at) VALUES ('counter', '0', ?)", (utcnow_iso(),)
    )


def test_utcnow_iso_format() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", utcnow_iso())


async def test_pool_connections_have_the_pragmas(cp: ControlPlane) -> None:
    for _ in range(4):  # more than one pool connection gets checked
        async with cp.read() as conn:
            for pragma, expected in [
                ("foreign_keys", 1),
                ("busy_timeout", 10000),
                ("journal_mode", "wal"),
                ("synchronous", 1),
            ]:
                async with conn.execute(f"PRAGMA {pragma}") as cur:
                    assert (await cur.fetchone())[0] == expected, pragma
            assert conn.isolation_level is None


async def test_foreign_keys_enforced(cp: ControlPlane) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        await cp.execute(
            "INSERT INTO api_tokens (user_id, name, prefix, token_hash, created_at)"
            " VALUES (999, 'n', 'p', 'h', ?)",
            (utcnow_iso(),),
        )


async def test_helpers_return_dicts(cp: ControlPlane) -> None:
    now = utcnow_iso()
    done = await cp.execute(
        "INSERT INTO users (email, password_hash, role, created_at, updated_at)"
        " VALUES (?, 'x', 'admin', ?, ?)",
        ("a@example.com", now, now),
    )
    assert isinstance(done, Executed) and done.rowcount == 1 and done.lastrowid
    one = await cp.fetch_one("SELECT id, email, active FROM users WHERE id = ?", (done.lastrowid,))
    assert one == {"id": done.lastrowid, "email": "a@example.com", "active": 1}
    assert type(one) is dict
    assert await cp.fetch_one("SELECT * FROM users WHERE id = :id", {"id": 12345}) is None
    rows = await cp.fetch_all("SELECT email FROM users")
    assert rows == [{"email": "a@example.com"}]
    assert await cp.ping() == LATEST_SCHEMA


async def test_transaction_rolls_back_and_reraises(cp: ControlPlane) -> None:
    with pytest.raises(ValueError, match="boom"):
        async with cp.transaction() as conn:
            await conn.execute("INSERT INTO settings (key, value, updated_at) VALUES ('k', 'v', 'now')")
            raise ValueError("boom")
    assert await cp.fetch_one("SELECT * FROM settings WHERE key = 'k'") is None
    # every connection is still usable and none holds the write lock
    insert = "INSERT INTO settings VALUES (?, 'v', 'now')"
    await asyncio.gather(*(cp.execute(insert, (f"k{i}",)) for i in range(8)))
    assert len(await cp.fetch_all("SELECT key FROM settings")) == 8


async def test_cancelled_transaction_releases_the_lock(cp: ControlPlane) -> None:
    entered = asyncio.Event()

    async def slow() -> None:
        async with cp.transaction() as conn:
            await conn.execute("INSERT INTO settings VALUES ('cancelled', 'v', 'now')")
            entered.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(slow())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(cp.execute("INSERT INTO settings VALUES ('after', 'v', 'now')"), timeout=5)
    keys = [r["key"] for r in await cp.fetch_all("SELECT key FROM settings")]
    assert keys == ["after"]


async def test_nested_transaction_is_refused(cp: ControlPlane) -> None:
    async with cp.transaction():
        with pytest.raises(RuntimeError, match="nested"):
            await cp.execute("DELETE FROM settings")


async def test_reader_leaving_a_transaction_open_is_cleaned_up(cp: ControlPlane) -> None:
    async with cp.read() as conn:
        await conn.execute("BEGIN")
        await conn.execute("INSERT INTO settings VALUES ('dangling', 'v', 'now')")
    assert await cp.fetch_one("SELECT * FROM settings WHERE key = 'dangling'") is None
    await asyncio.wait_for(cp.execute("INSERT INTO settings VALUES ('ok', 'v', 'now')"), timeout=5)


async def test_50_concurrent_transactions_serialize(cp: ControlPlane) -> None:
    await _seed_counter(cp)
    await asyncio.gather(*(_increment(cp) for _ in range(50)))
    assert await _counter(cp) == 50


async def test_two_control_planes_on_one_file_serialize(db_path: Path) -> None:
    """Like server + worker: separate pools, SQLite's lock + busy_timeout serialize them."""
    a = await ControlPlane.open(db_path, pool_size=3)
    b = await ControlPlane.open(db_path, pool_size=3)
    try:
        await _seed_counter(a)
        await asyncio.gather(*(_increment(x) for _ in range(25) for x in (a, b)))
        assert await _counter(a) == 50
        assert await _counter(b) == 50
    finally:
        await a.close()
        await b.close()


async def test_reads_run_while_a_write_transaction_is_open(cp: ControlPlane) -> None:
    await _seed_counter(cp)
    async with cp.transaction() as conn:
        await conn.execute("UPDATE settings SET value = '7' WHERE key = 'counter'")
        assert await asyncio.wait_for(_counter(cp), timeout=2) == 0  # WAL snapshot, not blocked
    assert await _counter(cp) == 7


async def test_closed_pool_refuses(db_path: Path) -> None:
    control = await ControlPlane.open(db_path, pool_size=1)
    await control.close()
    await control.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await control.ping()
