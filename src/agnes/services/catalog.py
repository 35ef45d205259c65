"""The data catalog as one user sees it: only tables the read rule lets them read.

Name collisions: the engine serves the bare name `table` only while exactly
one source has a table of that name; each table says whether its bare name
works (`bare_name`) and which OTHER tables of that name the caller may read
(`collides_with`) -- tables the caller may not read are never named.

Descriptions: an admin's edit in the registry wins over the extract's `_meta`.
The detail view adds column statistics and a few sample rows, computed by
queries through the same guard and executor as user SQL and cached per
(table, run): published runs are immutable, so a cached answer stays right
until the next sync of that source.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec

from agnes.control.access import edited_descriptions
from agnes.engine import query as engine
from agnes.engine.catalog import CatalogTable
from agnes.engine.connection import quote_ident
from agnes.engine.encode import rows_of
from agnes.engine.stats import parse_stats, sample_sql, stats_sql
from agnes.errors import AgnesError
from agnes.models import User
from agnes.services.instance import Instance
from agnes.services.permissions import Access, access_for
from agnes.services.query import ENGINE_ERRORS, executor_of

NOT_FOUND_HINT = "List the tables you can read with GET /api/catalog/tables."
TABLE_ID_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}\.[a-z_][a-z0-9_]{0,127}$")
_CACHE: OrderedDict[tuple[str, str], tuple[dict[str, Any] | None, str | None, Any]] = OrderedDict()
_CACHE_SIZE = 256


BareName = Annotated[str | None, msgspec.Meta(description=(
    'The unqualified name, ready for SQL ("table"). Null when another served source has a table with the same '
    "name: the bare name is then not served, so use qualified_name."))]
CollidesWith = Annotated[list[str], msgspec.Meta(description=(
    "Ids of the other tables with this name that you may read. Tables you may not read are never named, so "
    "bare_name can be null while this list is empty."))]


class Column(msgspec.Struct, frozen=True):
    name: str
    type: str


class Table(msgspec.Struct, frozen=True, kw_only=True):
    id: str  # '<source>.<table>', stable across syncs
    source: str
    name: str
    qualified_name: str  # ready for SQL: "source"."table"
    description: str | None
    rows: int | None
    size_bytes: int | None
    extracted_at: str | None  # UTC, ISO 8601: when the data was pulled from the source
    query_mode: str  # local | remote
    columns: list[Column]
    status: str  # ok | stale (the newest sync could not be attached; the previous data is served)
    bare_name: BareName
    collides_with: CollidesWith


class CatalogPage(msgspec.Struct, frozen=True):
    count: int
    tables: list[Table]


class ColumnStats(msgspec.Struct, frozen=True):
    non_null: int
    nulls: int
    distinct_approx: int | None  # approximate; null for nested and binary types
    min: str | None  # as text, cut to 100 characters
    max: str | None


class ColumnDetail(msgspec.Struct, frozen=True):
    name: str
    type: str
    stats: ColumnStats | None  # null when not computed (remote table, wide table, error)


class SampleRows(msgspec.Struct, frozen=True):
    columns: list[str]
    rows: list[list[Any]]


class TableDetail(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    source: str
    name: str
    qualified_name: str
    description: str | None
    rows: int | None
    size_bytes: int | None
    extracted_at: str | None
    query_mode: str
    status: str
    columns: list[ColumnDetail]
    sample: SampleRows | None
    stats_note: str | None = None  # why statistics or samples are missing
    bare_name: BareName
    collides_with: CollidesWith


def table_not_found(table_id: str, hint: str = NOT_FOUND_HINT) -> AgnesError:
    """One answer for "missing" and "not yours"; an id that is not `<source>.<table>` is not echoed."""
    shown = f"Table {table_id!r}" if TABLE_ID_RE.match(table_id) else "No table with this id (ids are <source>.<table>)"
    return AgnesError("table_not_found", f"{shown} does not exist or you have no access to it.", hint=hint)


def iso_utc(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class _Readable:
    access: Access
    tables: list[CatalogTable]  # the ones the caller may read
    descriptions: dict[str, str | None]
    owners: dict[str, list[str]]  # table name -> ids of ALL served tables with that name (same snapshot)


def _table(t: CatalogTable, seen: _Readable) -> Table:
    owners = seen.owners.get(t.name, [t.id])
    return Table(id=t.id, source=t.source, name=t.name, qualified_name=f"{quote_ident(t.source)}.{quote_ident(t.name)}",
                 description=seen.descriptions.get(t.id, t.description), rows=t.rows, size_bytes=t.size_bytes,
                 extracted_at=iso_utc(t.extracted_at), query_mode=t.query_mode,
                 columns=[Column(n, ty) for n, ty in t.columns], status=t.status,
                 bare_name=quote_ident(t.name) if len(owners) == 1 else None,
                 collides_with=[o for o in owners if o != t.id and seen.access.can_read(o)])


async def _readable(instance: Instance, user: User) -> _Readable:
    executor_of(instance)  # 503 catalog_loading while the first build runs
    assert instance.serving is not None
    access = await access_for(instance, user)
    async with instance.control.read() as conn:
        descriptions = await edited_descriptions(conn)
    served = instance.serving.catalog.tables()
    # The engine serves a bare name only while exactly one source has that table (engine/attach.py);
    # counted over every served table, readable or not, from the same snapshot as the list.
    owners: dict[str, list[str]] = {}
    for t in served:
        owners.setdefault(t.name, []).append(t.id)
    return _Readable(access, [t for t in served if access.can_read(t.id)], descriptions, owners)


async def list_tables(instance: Instance, user: User, *, source: str | None = None,
                      q: str | None = None) -> CatalogPage:
    seen = await _readable(instance, user)
    found = [_table(t, seen) for t in seen.tables if source is None or t.source == source]
    if q:
        needle = q.casefold()
        found = [t for t in found if needle in t.id.casefold() or needle in (t.description or "").casefold()]
    return CatalogPage(count=len(found), tables=found)


async def get_table(instance: Instance, user: User, table_id: str) -> TableDetail:
    seen = await _readable(instance, user)
    access = seen.access
    found = next((t for t in seen.tables if t.id == table_id), None)
    if found is None:
        raise table_not_found(table_id)
    assert instance.serving is not None
    run = str(instance.serving.catalog.sources.get(found.source, ""))
    stats, note, sample = _CACHE.get((table_id, run), (None, None, None))
    if (table_id, run) not in _CACHE:
        stats, note, sample, cacheable = await _compute(instance, access, found)
        if cacheable:
            _CACHE[(table_id, run)] = (stats, note, sample)
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
    base = _table(found, seen)
    columns = [ColumnDetail(c.name, c.type, ColumnStats(**stats[c.name]) if stats and c.name in stats else None)
               for c in base.columns]
    return TableDetail(id=base.id, source=base.source, name=base.name, qualified_name=base.qualified_name,
                       description=base.description, rows=base.rows, size_bytes=base.size_bytes,
                       extracted_at=base.extracted_at, query_mode=base.query_mode, status=base.status,
                       columns=columns, sample=sample, stats_note=note, bare_name=base.bare_name,
                       collides_with=base.collides_with)


async def _run(instance: Instance, access: Access, sql: str) -> engine.QueryResult:
    executor = executor_of(instance)
    return await executor.run(await executor.guard(sql, readable=access.can_read))


async def _compute(instance: Instance, access: Access,
                   table: CatalogTable) -> tuple[dict[str, Any] | None, str | None, SampleRows | None, bool]:
    """(stats, note, sample, cacheable): failures are reported in `note`, never cached."""
    stats, notes, sample, ok = None, [], None, True
    if table.query_mode == "remote":
        notes.append("Statistics are not computed for remote tables (each would query the remote database).")
    else:
        try:
            result = await _run(instance, access, stats_sql(table.id, table.columns))
            stats = parse_stats([c[0].as_py() for c in result.table.columns], table.columns)[1]
        except ENGINE_ERRORS as exc:
            notes.append(f"Statistics unavailable: {getattr(exc, 'message', exc)}")
            ok = False
    try:
        result = await _run(instance, access, sample_sql(table.id))
        rows = rows_of(result.table, [t for _, t in result.columns])
        sample = SampleRows(columns=[n for n, _ in result.columns], rows=[list(r) for r in rows])
    except ENGINE_ERRORS as exc:
        notes.append(f"Sample rows unavailable: {getattr(exc, 'message', exc)}")
        ok = False
    return stats, " ".join(notes) or None, sample, ok
