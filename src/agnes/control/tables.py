"""The table registry (`registered_tables`): the only place that writes SQL about it.

`columns` and `edited` are JSON lists, decoded here so callers see Python values.
`edited` names the fields an admin changed; discovery must never overwrite those.
"""

from __future__ import annotations

from typing import Any

import aiosqlite
import msgspec

from agnes.control._rows import change, many, one
from agnes.control.db import utcnow_iso

_COLUMNS = ("id, source, name, native_id, description, visibility, query_mode, columns, edited, registered_at, "
            "updated_at")
EDITABLE = ("description", "visibility", "query_mode")


def _table(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    row["columns"] = msgspec.json.decode(row["columns"])
    row["edited"] = msgspec.json.decode(row["edited"])
    return row


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


async def get(conn: aiosqlite.Connection, table_id: str) -> dict[str, Any] | None:
    return _table(await one(conn, f"SELECT {_COLUMNS} FROM registered_tables WHERE id = ?", (table_id,)))


async def list_all(conn: aiosqlite.Connection, source: str | None = None) -> list[dict[str, Any]]:
    if source is None:
        rows = await many(conn, f"SELECT {_COLUMNS} FROM registered_tables ORDER BY source, name")
    else:
        rows = await many(conn, f"SELECT {_COLUMNS} FROM registered_tables WHERE source = ? ORDER BY name", (source,))
    return [t for t in (_table(r) for r in rows) if t is not None]


async def insert(
    conn: aiosqlite.Connection, *, source: str, name: str, native_id: str | None, description: str | None,
    query_mode: str, columns: list[dict[str, str]],
) -> None:
    now = utcnow_iso()
    await change(
        conn,
        "INSERT INTO registered_tables (id, source, name, native_id, description, query_mode, columns,"
        " registered_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (f"{source}.{name}", source, name, native_id, description, query_mode, _json(columns), now, now),
    )


async def update(conn: aiosqlite.Connection, table_id: str, fields: dict[str, Any]) -> None:
    """Set the given columns (description, visibility, query_mode, native_id, columns, edited)."""
    allowed = {*EDITABLE, "native_id", "columns", "edited"}
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"not a registry column: {sorted(unknown)}")
    if not fields:
        return
    encoded = {k: _json(v) if k in ("columns", "edited") else v for k, v in fields.items()}
    sets = ", ".join(f"{k} = ?" for k in encoded)
    await change(conn, f"UPDATE registered_tables SET {sets}, updated_at = ? WHERE id = ?",
                 (*encoded.values(), utcnow_iso(), table_id))


async def delete(conn: aiosqlite.Connection, table_id: str) -> int:
    return await change(conn, "DELETE FROM registered_tables WHERE id = ?", (table_id,))
