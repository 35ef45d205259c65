"""Grants: only the clean-up the sources and registry need (the grants API is a later issue)."""

from __future__ import annotations

import aiosqlite

from agnes.control._rows import change


async def delete_by_source(conn: aiosqlite.Connection, source: str) -> int:
    """Drop every grant on a source or one of its tables (a deleted source leaves none behind)."""
    return await change(conn, "DELETE FROM grants WHERE source = ?", (source,))


async def delete_by_target(conn: aiosqlite.Connection, target: str) -> int:
    """Drop the grants on exactly one table id ('<source>.<table>')."""
    return await change(conn, "DELETE FROM grants WHERE target = ?", (target,))
