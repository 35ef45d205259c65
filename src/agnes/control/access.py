"""The control-plane facts the read rule needs, in one round trip per request.

Why one UNION query: every catalog call and every query checks permissions, and
`SELECT 1` should cost a few milliseconds. Only what can change the answer is
read: the caller's grants, tables whose visibility is not the default
`inherit`, `inherit` tables of sources that are visible to all (a served table
with no registry row is readable by grants only, so unregistering a table never
widens who reads it), and those sources. The rule itself lives in
services/permissions.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiosqlite

from agnes.control._rows import many


@dataclass(frozen=True)
class ReadFacts:
    grants: frozenset[str]  # the user's targets: '<source>.<table>' and '<source>.*'
    # table id -> 'all' | 'restricted' | 'inherit' (the last only in visible sources); absent: not
    # registered, or inherit in a source not visible to all -- grants only, either way
    visibility: dict[str, str]
    visible_sources: frozenset[str]  # sources with visible_to_all


async def read_facts(conn: aiosqlite.Connection, user_id: int) -> ReadFacts:
    rows = await many(
        conn,
        "SELECT 'grant' AS kind, target AS name FROM grants WHERE user_id = ? "
        "UNION ALL SELECT visibility, id FROM registered_tables WHERE visibility <> 'inherit' "
        "OR source IN (SELECT name FROM sources WHERE visible_to_all = 1) "
        "UNION ALL SELECT 'source', name FROM sources WHERE visible_to_all = 1",
        (user_id,),
    )
    grants = frozenset(r["name"] for r in rows if r["kind"] == "grant")
    sources = frozenset(r["name"] for r in rows if r["kind"] == "source")
    visibility = {r["name"]: r["kind"] for r in rows if r["kind"] in ("all", "restricted", "inherit")}
    return ReadFacts(grants, visibility, sources)


async def edited_descriptions(conn: aiosqlite.Connection) -> dict[str, str | None]:
    """Table id -> the description an admin set (it wins over the extract's)."""
    rows = await many(
        conn,
        "SELECT id, description FROM registered_tables "
        "WHERE EXISTS (SELECT 1 FROM json_each(registered_tables.edited) WHERE value = 'description')",
    )
    return {r["id"]: r["description"] for r in rows}


async def registered_ids(conn: aiosqlite.Connection, source: str) -> set[str]:
    rows = await many(conn, "SELECT id FROM registered_tables WHERE source = ?", (source,))
    return {r["id"] for r in rows}
