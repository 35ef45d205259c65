"""The table registry: discover-and-register, and the admin's edits of registered tables.

Registration is idempotent and never overwrites a field an admin edited (the
row's `edited` list). Two native names that normalise to one table name are
reported `invalid`, never merged; columns that changed since registration are
reported `drifted` once (with the difference, also in the audit log) and the
stored columns then follow the source, so the next run reports no drift.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import aiosqlite
import msgspec

from agnes.control import audit, grants, kv
from agnes.control import sources as sources_repo
from agnes.control import tables as tables_repo
from agnes.errors import AgnesError
from agnes.extract.names import table_name_problem
from agnes.models import User
from agnes.services.instance import Instance
from agnes.services.source_types import Column, DiscoveredTable, type_of

log = logging.getLogger(__name__)
Visibility = Literal["inherit", "all", "restricted"]
DEFAULTS = {"description": None, "visibility": "inherit", "query_mode": "local"}


class TableRef(msgspec.Struct, frozen=True):
    id: str
    name: str
    native_id: str | None


class TableDrift(msgspec.Struct, frozen=True):
    id: str
    name: str
    native_id: str | None
    added: list[str]
    removed: list[str]
    retyped: list[str]  # "col: BIGINT -> VARCHAR"


class TableProblem(msgspec.Struct, frozen=True):
    name: str
    native_id: str | None
    problem: str


class SourceDiscovery(msgspec.Struct, frozen=True, kw_only=True):
    source: str
    registered: list[TableRef]
    skipped: list[TableRef]  # already registered, unchanged
    drifted: list[TableDrift]
    invalid: list[TableProblem]
    missing: list[TableRef] = msgspec.field(default_factory=list)  # registered but not found any more
    error: str | None = None  # discovery itself failed; nothing was changed for this source


class DiscoveryResult(msgspec.Struct, frozen=True):
    dry_run: bool
    sources: list[SourceDiscovery]


class RegisteredTable(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    source: str
    name: str
    native_id: str | None
    description: str | None
    visibility: Visibility
    query_mode: Literal["local", "remote"]
    columns: list[Column]
    edited: list[str]  # fields an admin set; discovery leaves them alone
    registered_at: str
    updated_at: str


def _split(discovered: list[DiscoveredTable]) -> tuple[dict[str, DiscoveredTable], list[TableProblem]]:
    """Usable tables by name, and the ones that are not (bad name, clash, unreadable)."""
    groups: dict[str, list[DiscoveredTable]] = {}
    for table in discovered:
        groups.setdefault(table.name, []).append(table)
    usable: dict[str, DiscoveredTable] = {}
    invalid: list[TableProblem] = []
    for name, group in groups.items():
        if len(group) > 1:
            natives = ", ".join(repr(t.native_id or t.name) for t in group)
            invalid += [TableProblem(name, t.native_id, f"{natives} all normalise to the table name {name!r}; "
                                     "rename all but one (they are never merged)") for t in group]
            continue
        table = group[0]
        problem = table.problem or table_name_problem(name)
        if problem:
            invalid.append(TableProblem(name, table.native_id, problem))
        else:
            usable[name] = table
    return usable, invalid


def _drift(old: list[dict[str, str]], new: list[Column]) -> tuple[list[str], list[str], list[str]] | None:
    if not old or not new:
        return None
    before = {c["name"]: c["type"] for c in old}
    after = {c.name: c.type for c in new}
    added = [n for n in after if n not in before]
    removed = [n for n in before if n not in after]
    retyped = [f"{n}: {before[n]} -> {after[n]}" for n in after if n in before and before[n] != after[n]]
    return (added, removed, retyped) if added or removed or retyped else None


async def apply_discovery(conn: aiosqlite.Connection, source: str, discovered: list[DiscoveredTable], *,
                          dry_run: bool, report_missing: bool) -> SourceDiscovery:
    """Compare with the registry and (unless dry_run) register/refresh; call inside a transaction."""
    usable, invalid = _split(discovered)
    existing = {t["name"]: t for t in await tables_repo.list_all(conn, source)}
    registered, skipped, drifted = [], [], []
    for name, table in sorted(usable.items()):
        row = existing.get(name)
        ref = TableRef(f"{source}.{name}", name, table.native_id)
        columns = [msgspec.structs.asdict(c) for c in table.columns]
        if row is None:
            registered.append(ref)
            if not dry_run:
                await tables_repo.insert(conn, source=source, name=name, native_id=table.native_id,
                                         description=table.description, query_mode=table.query_mode, columns=columns)
                await _keep_restricted(conn, ref.id)
            continue
        drift = _drift(row["columns"], table.columns)
        if drift:
            drifted.append(TableDrift(ref.id, name, table.native_id, *drift))
        else:
            skipped.append(ref)
        fresh: dict[str, Any] = {}
        if table.native_id and table.native_id != row["native_id"]:
            fresh["native_id"] = table.native_id
        if columns and columns != row["columns"]:
            fresh["columns"] = columns
        for field, value in (("description", table.description), ("query_mode", table.query_mode)):
            if field not in row["edited"] and value is not None and value != row[field]:
                fresh[field] = value
        if fresh and not dry_run:
            await tables_repo.update(conn, ref.id, fresh)
    missing = [TableRef(t["id"], n, t["native_id"]) for n, t in sorted(existing.items())
               if n not in usable and all(p.name != n for p in invalid)] if report_missing else []
    return SourceDiscovery(source=source, registered=registered, skipped=skipped, drifted=drifted,
                           invalid=invalid, missing=missing)


async def _record(conn: aiosqlite.Connection, outcome: SourceDiscovery, actor: User | None, actor_name: str,
                  ip: str | None) -> None:
    if not (outcome.registered or outcome.drifted):
        return
    await audit.record(conn, action="tables_registered", actor=actor.email if actor else actor_name,
                       actor_user_id=actor.id if actor else None, target=f"source:{outcome.source}", ip=ip,
                       detail={"registered": [t.id for t in outcome.registered],
                               "drifted": [msgspec.structs.asdict(d) for d in outcome.drifted]})


async def register_tables(instance: Instance, source: str, tables: list[DiscoveredTable], *,
                          actor: User | None = None, actor_name: str = "sync", dry_run: bool = False,
                          report_missing: bool = False, ip: str | None = None) -> SourceDiscovery:
    async with instance.control.transaction() as conn:
        if await sources_repo.get(conn, source) is None:
            raise AgnesError("source_not_found", f"No source is called {source!r}.")
        outcome = await apply_discovery(conn, source, tables, dry_run=dry_run, report_missing=report_missing)
        if not dry_run:
            await _record(conn, outcome, actor, actor_name, ip)
    return outcome


async def discover_and_register(instance: Instance, actor: User | None, *, source: str | None = None,
                                dry_run: bool = False, ip: str | None = None) -> DiscoveryResult:
    """Discover each source's tables (or one source's) and register the new ones."""
    from agnes.services.sources import source_context

    async with instance.control.read() as conn:
        names = await sources_repo.names(conn)
    if source is not None and source not in names:
        raise AgnesError("source_not_found", f"No source is called {source!r}; sources: {', '.join(names) or 'none'}.")
    outcomes = []
    for name in [source] if source is not None else names:
        try:
            row, ctx = await source_context(instance, name)
            stype = type_of(row["type"])
            if stype is None:
                raise AgnesError("unsupported_data_source", f"data_source {row['type']!r} is not known to this "
                                 "version of Agnes.")
            found = await stype.discover(ctx)
        except AgnesError as e:
            outcomes.append(SourceDiscovery(source=name, registered=[], skipped=[], drifted=[], invalid=[],
                                            error=f"{e.message} {e.hint}"))
            continue
        except Exception as e:  # one source's failure must not hide the others' results
            log.exception("discovery of source %s failed", name)
            outcomes.append(SourceDiscovery(source=name, registered=[], skipped=[], drifted=[], invalid=[],
                                            error=f"discovery failed: {type(e).__name__}: {e}"))
            continue
        outcomes.append(await register_tables(instance, name, found, actor=actor, actor_name="api" if actor else "sync",
                                              dry_run=dry_run, report_missing=True, ip=ip))
        if not dry_run:  # discovered once: from now on the registry is the admin's to curate
            async with instance.control.transaction() as conn:
                await sources_repo.clear_auto_discover(conn, name)
    return DiscoveryResult(dry_run=dry_run, sources=outcomes)


async def discover_once(instance: Instance, source: str) -> SourceDiscovery | None:
    """A new source's first full sync discovers and registers its tables on its own - once.

    None when that already happened (any discovery that worked clears the flag), so a later sync
    never re-registers tables an admin unregistered.
    """
    async with instance.control.read() as conn:
        row = await sources_repo.get(conn, source)
    if row is None or not row["auto_discover"]:
        return None
    result = await discover_and_register(instance, None, source=source)  # clears the flag when it worked
    return result.sources[0]


async def _keep_restricted(conn: aiosqlite.Connection, table_id: str) -> None:
    """A table registered again after an admin unregistered it while `restricted` stays restricted
    (marked edited, so nothing resets it): unregistering must never widen who reads it."""
    if await kv.get(conn, kv.UNREGISTERED_RESTRICTED + table_id) is not None:
        await tables_repo.update(conn, table_id, {"visibility": "restricted", "edited": ["visibility"]})
        await kv.delete(conn, kv.UNREGISTERED_RESTRICTED + table_id)


def _table(row: dict[str, Any]) -> RegisteredTable:
    return msgspec.convert(row, RegisteredTable)


async def list_tables(instance: Instance, source: str | None = None) -> list[RegisteredTable]:
    async with instance.control.read() as conn:
        if source is not None and await sources_repo.get(conn, source) is None:
            raise AgnesError("source_not_found", f"No source is called {source!r}.")
        return [_table(r) for r in await tables_repo.list_all(conn, source)]


async def _require(conn: aiosqlite.Connection, table_id: str) -> dict[str, Any]:
    row = await tables_repo.get(conn, table_id)
    if row is None:
        raise AgnesError("table_not_found", f"No registered table has id {table_id!r} (ids are <source>.<table>).")
    return row


async def get_table(instance: Instance, table_id: str) -> RegisteredTable:
    async with instance.control.read() as conn:
        return _table(await _require(conn, table_id))


async def update_table(instance: Instance, actor: User, table_id: str, changes: dict[str, Any],
                       ip: str | None = None) -> RegisteredTable:
    """Set description/visibility/query_mode; each set field is marked edited, null hands it back to discovery."""
    if not changes:
        raise AgnesError("empty_update", "Send at least one of: description, visibility, query_mode.")
    async with instance.control.transaction() as conn:
        row = await _require(conn, table_id)
        edited = set(row["edited"])
        fields: dict[str, Any] = {}
        for field, value in changes.items():
            fields[field] = DEFAULTS[field] if value is None else value
            (edited.discard if value is None else edited.add)(field)
        fields["edited"] = sorted(edited)
        await tables_repo.update(conn, table_id, fields)
        await audit.record(conn, action="table_updated", actor=actor.email, actor_user_id=actor.id,
                           target=f"table:{table_id}", detail={"changed": changes}, ip=ip)
        return _table(await _require(conn, table_id))


async def delete_table(instance: Instance, actor: User, table_id: str, ip: str | None = None) -> None:
    """Unregister a table and drop its grants; the published data is not touched (a type that
    extracts every table registers it again at its next sync)."""
    async with instance.control.transaction() as conn:
        row = await _require(conn, table_id)
        removed = await grants.delete_by_target(conn, table_id)
        if row["visibility"] == "restricted":  # a sync registers it again: it must come back restricted
            await kv.put(conn, kv.UNREGISTERED_RESTRICTED + table_id, "restricted")
        await tables_repo.delete(conn, table_id)
        await audit.record(conn, action="table_unregistered", actor=actor.email, actor_user_id=actor.id,
                           target=f"table:{table_id}", detail={"source": row["source"], "grants": removed}, ip=ip)
