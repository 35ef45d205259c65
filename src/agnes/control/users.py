"""Users table: the only place that writes SQL about users."""

from __future__ import annotations

from typing import Any

import aiosqlite

from agnes.control._rows import change, insert, many, one, scalar
from agnes.control.db import utcnow_iso
from agnes.models import User

_COLUMNS = "id, email, role, active, created_at, updated_at, last_login_at"


def _user(row: dict[str, Any] | None) -> User | None:
    if row is None:
        return None
    row.pop("password_hash", None)
    return User(**{**row, "active": bool(row["active"])})


async def count(conn: aiosqlite.Connection) -> int:
    return int(await scalar(conn, "SELECT count(*) FROM users"))


async def count_active_admins(conn: aiosqlite.Connection) -> int:
    return int(await scalar(conn, "SELECT count(*) FROM users WHERE role = 'admin' AND active = 1"))


async def get(conn: aiosqlite.Connection, user_id: int) -> User | None:
    return _user(await one(conn, f"SELECT {_COLUMNS} FROM users WHERE id = ?", (user_id,)))


async def get_with_hash(conn: aiosqlite.Connection, email: str) -> tuple[User, str] | None:
    row = await one(conn, f"SELECT {_COLUMNS}, password_hash FROM users WHERE email = ?", (email,))
    if row is None:
        return None
    password_hash = row["password_hash"]
    user = _user(row)
    assert user is not None
    return user, password_hash


async def get_by_email(conn: aiosqlite.Connection, email: str) -> User | None:
    return _user(await one(conn, f"SELECT {_COLUMNS} FROM users WHERE email = ?", (email,)))


async def list_all(conn: aiosqlite.Connection) -> list[User]:
    rows = await many(conn, f"SELECT {_COLUMNS} FROM users ORDER BY id")
    return [u for u in map(_user, rows) if u is not None]


async def create(conn: aiosqlite.Connection, *, email: str, password_hash: str, role: str) -> User:
    now = utcnow_iso()
    user_id = await insert(
        conn,
        "INSERT INTO users (email, password_hash, role, active, created_at, updated_at) VALUES (?, ?, ?, 1, ?, ?)",
        (email, password_hash, role, now, now),
    )
    user = await get(conn, user_id)
    assert user is not None
    return user


async def update(
    conn: aiosqlite.Connection,
    user_id: int,
    *,
    role: str | None = None,
    active: bool | None = None,
    password_hash: str | None = None,
) -> User | None:
    sets: list[str] = []
    params: list[Any] = []
    for column, value in (("role", role), ("active", None if active is None else int(active)),
                          ("password_hash", password_hash)):
        if value is not None:
            sets.append(f"{column} = ?")
            params.append(value)
    if sets:
        sets.append("updated_at = ?")
        params.append(utcnow_iso())
        await change(conn, f"UPDATE users SET {', '.join(sets)} WHERE id = ?", (*params, user_id))
    return await get(conn, user_id)


async def touch_login(conn: aiosqlite.Connection, user_id: int) -> None:
    await change(conn, "UPDATE users SET last_login_at = ? WHERE id = ?", (utcnow_iso(), user_id))


async def delete(conn: aiosqlite.Connection, user_id: int) -> bool:
    return await change(conn, "DELETE FROM users WHERE id = ?", (user_id,)) > 0
