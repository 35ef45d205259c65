"""Sources: configure, list, change and delete them; hand the sync what it needs to run one.

For the sync (services/sync.py) — the two entry points it uses:

`await connector_run_spec(instance, source_name, tables) -> RunSpec`
    Everything needed to run a source's connector: `connector` (ConnectorInfo
    from agnes.extract.runner, None for `external` sources, which have no
    connector), `config` (AGNES_CONFIG_JSON: non-secret options plus derived
    ones such as csv's `files_dir`), `secrets_env` (decrypted, keyed by the env
    var names the connector reads), `tables` (AGNES_TABLES: for a type that
    `extracts_all`, the `tables` you passed or None = everything; otherwise
    the registered tables' native ids — [] means nothing is registered yet, so
    run `registry.discover_and_register(instance, None, source=...)` first),
    and `state_dir` (persistent per source; removed when the source is deleted).
    Raises AgnesError source_not_found / connector_not_found / table_not_found.

`await register_published_tables(instance, source, tables) -> SourceDiscovery`
    After a publish: register what the extract holds (objects with name,
    native_id?, description?, columns [{name, type}], query_mode). Idempotent,
    never overwrites fields an admin edited, reports `drifted` columns and
    `invalid` names; tables not in `tables` are left alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aiosqlite
import msgspec

from agnes.control import audit, grants, health_errors, kv, publications
from agnes.control import sources as sources_repo
from agnes.control import tables as tables_repo
from agnes.errors import AgnesError
from agnes.extract.runner import ConnectorInfo
from agnes.models import User
from agnes.security.encryption import MASK, mask
from agnes.services.config_export import write_export
from agnes.services.instance import Instance
from agnes.services.source_files import remove_files, source_state_dir
from agnes.services.source_options import Secrets, check_schedule, merge_options, merge_secrets, next_run, parse_body
from agnes.services.source_types import Column, DiscoveredTable, SourceContext, get_type, type_of

log = logging.getLogger(__name__)


class RunSpec(msgspec.Struct, frozen=True, kw_only=True):
    """How to run one source's connector (see the module docstring). repr() hides secrets."""

    source: str
    type: str
    connector: ConnectorInfo | None
    config: dict[str, Any]
    secrets_env: dict[str, str]
    tables: list[str] | None
    extracts_all: bool
    state_dir: Path

    def __repr__(self) -> str:
        hidden = {k: MASK for k in self.secrets_env}
        return (f"RunSpec(source={self.source!r}, type={self.type!r}, connector={self.connector!r}, "
                f"config={self.config!r}, secrets_env={hidden!r}, tables={self.tables!r}, "
                f"extracts_all={self.extracts_all!r}, state_dir={str(self.state_dir)!r})")


class LastSync(msgspec.Struct, frozen=True, kw_only=True):
    job_id: int
    status: str
    created_at: str
    finished_at: str | None = None
    error: str | None = None


class Source(msgspec.Struct, frozen=True, kw_only=True):
    """A source as admins see it; `secrets` are masked ("••••abcd"), never the values."""

    name: str
    type: str
    options: dict[str, Any]
    secrets: dict[str, str]
    schedule: str | None
    next_sync_at: str | None
    visible_to_all: bool
    origin: str
    status: str  # never_synced | queued | running | succeeded | partial | failed | cancelled
    tables: int
    last_sync: LastSync | None
    published_at: str | None
    extracted_at: str | None
    created_at: str
    updated_at: str


class ConfiguredSource(Source, frozen=True, kw_only=True):
    created: bool
    changed: list[str]


async def _stored_secrets(instance: Instance, conn: aiosqlite.Connection, name: str) -> Secrets:
    rows = await sources_repo.secrets_of(conn, name)
    return {r["key"]: (instance.encryptor.decrypt(r["ciphertext"]), r["env_ref"]) for r in rows}


def _masked(instance: Instance, rows: list[dict[str, Any]]) -> dict[str, str]:
    shown = {}
    for row in rows:
        try:
            shown[row["key"]] = mask(instance.encryptor.decrypt(row["ciphertext"]))
        except AgnesError:
            shown[row["key"]] = MASK
    return shown


async def _source_out(instance: Instance, conn: aiosqlite.Connection, row: dict[str, Any]) -> Source:
    name = row["name"]
    job = await sources_repo.last_job(conn, name)
    publication = await sources_repo.publication(conn, name)
    return Source(
        name=name, type=row["type"], options=row["options"],
        secrets=_masked(instance, await sources_repo.secrets_of(conn, name)),
        schedule=row["schedule"], next_sync_at=next_run(row["schedule"]), visible_to_all=row["visible_to_all"],
        origin=row["origin"], status=job["status"] if job else "never_synced",
        tables=await sources_repo.table_count(conn, name),
        last_sync=LastSync(job_id=job["id"], status=job["status"], created_at=job["created_at"],
                           finished_at=job["finished_at"], error=job["error"]) if job else None,
        published_at=publication["published_at"] if publication else None,
        extracted_at=publication["extracted_at"] if publication else None,
        created_at=row["created_at"], updated_at=row["updated_at"],
    )


async def _require(conn: aiosqlite.Connection, name: str) -> dict[str, Any]:
    row = await sources_repo.get(conn, name)
    if row is None:
        known = await sources_repo.names(conn)
        raise AgnesError("source_not_found", f"No source is called {name!r}; sources: {', '.join(known) or 'none'}.")
    return row


async def source_context(instance: Instance, name: str) -> tuple[dict[str, Any], SourceContext]:
    async with instance.control.read() as conn:
        row = await _require(conn, name)
        secrets = await _stored_secrets(instance, conn, name)
    return row, SourceContext(name, row["options"], {k: v for k, (v, _) in secrets.items()}, instance.settings)


def _actor(actor: User | None, origin: str) -> dict[str, Any]:
    return {"actor": actor.email if actor else origin, "actor_user_id": actor.id if actor else None}


def _changes(row: dict[str, Any] | None, options: dict[str, Any], secrets: Secrets, stored: Secrets,
             schedule: str | None, visible: bool) -> list[str]:
    if row is None:
        return []
    changed = [k for k in sorted(set(options) | set(row["options"])) if options.get(k) != row["options"].get(k)]
    changed += [k for k in sorted(set(secrets) | set(stored)) if secrets.get(k) != stored.get(k)]
    if schedule != row["schedule"]:
        changed.append("schedule")
    if visible != row["visible_to_all"]:
        changed.append("visible_to_all")
    return changed


async def configure(
    instance: Instance, actor: User | None, body: Any, *, ip: str | None = None, origin: str = "api",
    secret_refs: dict[str, str] | None = None, check_warnings: list[str] | None = None,
) -> ConfiguredSource:
    """Create or update a source from a configure body; the same body twice changes nothing.

    The live check runs before anything is stored. With `check_warnings` (provisioning at
    start) a failed check is appended there and the source is stored anyway.
    """
    request = parse_body(body)
    stype, name = request.type, request.name

    def merged(row: dict[str, Any] | None, stored: Secrets) -> tuple[dict[str, Any], Secrets, str | None, bool]:
        if row is not None and row["type"] != stype.name:
            raise AgnesError("source_type_conflict", f"Source {name!r} exists with data_source {row['type']!r}, "
                             f"not {stype.name!r}.", hint=f"Send \"name\" with another name, or delete it first: "
                             f"DELETE /api/admin/sources/{name}?confirm={name}.")
        options = merge_options(stype, row["options"] if row else None, request.options, instance.settings)
        secrets = merge_secrets(stype, stored, request.secrets, instance.settings, secret_refs)
        schedule = request.schedule if request.schedule is not msgspec.UNSET else (row["schedule"] if row else None)
        visible = request.visible_to_all if request.visible_to_all is not msgspec.UNSET else (
            row["visible_to_all"] if row else False)
        return options, secrets, schedule, visible

    async with instance.control.read() as conn:
        row = await sources_repo.get(conn, name)
        stored = await _stored_secrets(instance, conn, name) if row else {}
    options, secrets, _, _ = merged(row, stored)
    try:
        await stype.check(SourceContext(name, options, {k: v for k, (v, _) in secrets.items()}, instance.settings))
    except AgnesError as e:
        if check_warnings is None:
            raise
        check_warnings.append(f"source {name!r}: {e.message} {e.hint}")
    async with instance.control.transaction() as conn:
        row = await sources_repo.get(conn, name)  # again, under the write lock
        stored = await _stored_secrets(instance, conn, name) if row else {}
        options, secrets, schedule, visible = merged(row, stored)
        changed = _changes(row, options, secrets, stored, schedule, visible)
        if row is None:
            await sources_repo.create(conn, name=name, type=stype.name, options=options, schedule=schedule,
                                      visible_to_all=visible, origin=origin)
        elif changed:
            await sources_repo.update(conn, name, options=options, visible_to_all=visible,
                                      schedule=schedule if schedule != row["schedule"] else msgspec.UNSET)
        for key in set(stored) - set(secrets):
            await sources_repo.delete_secret(conn, name, key)
        for key, (value, ref) in secrets.items():
            if stored.get(key) != (value, ref):
                await sources_repo.put_secret(conn, name, key, instance.encryptor.encrypt(value), ref)
        if row is None or changed:
            detail = {"type": stype.name, "options": options, "secrets": sorted(secrets), "schedule": schedule,
                      "visible_to_all": visible} if row is None else {"changed": changed}
            await audit.record(conn, action="source_created" if row is None else "source_updated",
                               target=f"source:{name}", detail=detail, ip=ip, **_actor(actor, origin))
            await write_export(conn, instance.settings)
        out = await _source_out(instance, conn, await _require(conn, name))
    return ConfiguredSource(**msgspec.structs.asdict(out), created=row is None, changed=changed)


async def list_sources(instance: Instance) -> list[Source]:
    async with instance.control.read() as conn:
        return [await _source_out(instance, conn, row) for row in await sources_repo.list_all(conn)]


async def get_source(instance: Instance, name: str) -> Source:
    async with instance.control.read() as conn:
        return await _source_out(instance, conn, await _require(conn, name))


async def update_source(
    instance: Instance, actor: User, name: str, *, schedule: str | None | msgspec.UnsetType = msgspec.UNSET,
    visible_to_all: bool | msgspec.UnsetType = msgspec.UNSET, ip: str | None = None,
) -> Source:
    """PATCH: cron schedule (UTC; None = on demand only) and visibility."""
    if schedule is msgspec.UNSET and visible_to_all is msgspec.UNSET:
        raise AgnesError("empty_update", "Send at least one of: schedule, visible_to_all.")
    if schedule is not msgspec.UNSET:
        schedule = check_schedule(schedule)
    async with instance.control.transaction() as conn:
        row = await _require(conn, name)
        if schedule is not msgspec.UNSET and schedule is not None and row["type"] == "external":
            raise AgnesError("invalid_schedule", f"Source {name!r} is external: its runs arrive in the inbox, so "
                             "Agnes cannot schedule it.", hint="Schedule the outside container instead; send "
                             f"PATCH /api/admin/sources/{name} {{\"schedule\": null}}.")
        changes: dict[str, Any] = {}
        if schedule is not msgspec.UNSET and schedule != row["schedule"]:
            changes["schedule"] = schedule
        if visible_to_all is not msgspec.UNSET and visible_to_all != row["visible_to_all"]:
            changes["visible_to_all"] = visible_to_all
        if changes:
            await sources_repo.update(conn, name, schedule=changes.get("schedule", msgspec.UNSET),
                                      visible_to_all=changes.get("visible_to_all"))
            await audit.record(conn, action="source_updated", target=f"source:{name}", detail={"changed": changes},
                               ip=ip, **_actor(actor, "api"))
            await write_export(conn, instance.settings)
        return await _source_out(instance, conn, await _require(conn, name))


async def delete_source(instance: Instance, actor: User, name: str, *, confirm: str | None,
                        ip: str | None = None) -> None:
    """Remove a source with its secrets, registry entries, grants, published runs and uploads.

    Refused while a sync of it is queued or running: the job would publish into a deleted source.
    """
    async with instance.control.transaction() as conn:
        row = await _require(conn, name)
        tables = await sources_repo.table_count(conn, name)
        if confirm != name:
            raise AgnesError("confirmation_required",
                             f"Deleting source {name!r} removes its published data, {tables} registered table(s), "
                             f"their grants and its uploaded files; confirm={confirm!r} does not match.",
                             hint=f"Repeat with DELETE /api/admin/sources/{name}?confirm={name}.")
        busy = await sources_repo.active_jobs(conn, name)
        if busy:
            raise AgnesError("source_busy", f"Source {name!r} has queued or running sync job(s) {busy}.",
                             hint=f"Cancel with POST /api/sync/jobs/{busy[0]}/cancel (or wait), then delete again.")
        removed_grants = await grants.delete_by_source(conn, name)
        # A later source of the same name starts afresh: its tables are not "unregistered while restricted".
        await kv.delete_prefix(conn, f"{kv.UNREGISTERED_RESTRICTED}{name}.")
        await sources_repo.delete(conn, name)
        # Its failed syncs say nothing about the instance any more: health must not stay degraded.
        await health_errors.resolve(conn, source=name)
        await audit.record(conn, action="source_deleted", target=f"source:{name}", ip=ip, **_actor(actor, "api"),
                           detail={"type": row["type"], "tables": tables, "grants": removed_grants})
        await write_export(conn, instance.settings)
    await asyncio.to_thread(remove_files, instance, name)
    async with instance.control.transaction() as conn:
        # Only now: a serving process that sees the counter move must find the runs gone.
        await publications.bump(conn)  # serving processes drop the removed source


async def ensure_external_source(instance: Instance, name: str) -> bool:
    """Register an inbox (Tier B) source the first time a run of it appears; True if created."""
    async with instance.control.transaction() as conn:
        if await sources_repo.get(conn, name) is not None:
            return False
        await sources_repo.create(conn, name=name, type="external", options={}, schedule=None,
                                  visible_to_all=False, origin="inbox", auto_discover=False)
        await audit.record(conn, action="source_created", actor="inbox", target=f"source:{name}",
                           detail={"type": "external"})
        await write_export(conn, instance.settings)
    return True


async def connector_run_spec(instance: Instance, source_name: str, tables: list[str] | None) -> RunSpec:
    """See the module docstring."""
    row, ctx = await source_context(instance, source_name)
    stype = type_of(row["type"])
    if stype is None:
        raise AgnesError("unsupported_data_source", f"Source {source_name!r} has data_source {row['type']!r}, which "
                         "this version of Agnes cannot run.",
                         hint="Upgrade Agnes (`docker compose pull && docker compose up -d`), or delete the "
                              f"source: DELETE /api/admin/sources/{source_name}?confirm={source_name}.")
    connector = stype.connector(ctx) if stype.connector_name(ctx.options) is not None else None
    wanted = list(tables) if tables is not None else None
    if not stype.extracts_all:
        async with instance.control.read() as conn:
            registered = {t["name"]: t["native_id"] or t["name"]
                          for t in await tables_repo.list_all(conn, source_name)}
        unknown = sorted(set(wanted or []) - set(registered))
        if unknown:
            raise AgnesError("table_not_found", f"Not registered in source {source_name!r}: {', '.join(unknown)}.",
                             hint="Register them with POST /api/admin/discover-and-register?source=" + source_name)
        wanted = [registered[t] for t in (wanted if wanted is not None else sorted(registered))]
    return RunSpec(source=source_name, type=stype.name, connector=connector, config=stype.run_config(ctx),
                   secrets_env=stype.secrets_env(ctx.secrets), tables=wanted, extracts_all=stype.extracts_all,
                   state_dir=source_state_dir(instance, source_name))


async def _uploaded_names(instance: Instance, source: str) -> dict[str, str]:
    from agnes.services.uploads import original_names

    async with instance.control.read() as conn:
        row = await sources_repo.get(conn, source)
    if row is None or row["type"] != "csv":
        return {}
    return await asyncio.to_thread(original_names, instance.settings.uploads_dir / source)


def _as_discovered(table: Any) -> DiscoveredTable:
    """A DiscoveredTable from a DiscoveredTable, a mapping or any object with those attributes."""
    if isinstance(table, DiscoveredTable):
        return table
    get = table.get if isinstance(table, Mapping) else (lambda key: getattr(table, key, None))
    columns = []
    for c in get("columns") or []:
        if isinstance(c, Mapping):
            columns.append(Column(str(c["name"]), str(c["type"])))
        elif isinstance(c, (tuple, list)):
            columns.append(Column(str(c[0]), str(c[1])))
        else:
            columns.append(Column(str(c.name), str(c.type)))
    mode = get("query_mode")
    return DiscoveredTable(name=str(get("name")), native_id=get("native_id"), description=get("description"),
                           columns=columns, query_mode=mode if mode in ("local", "remote") else "local")


async def register_published_tables(instance: Instance, source: str, tables: Sequence[Any]) -> Any:
    """See the module docstring; returns registry.SourceDiscovery.

    Columns and descriptions the caller does not give are read from the run now published.
    """
    from agnes.services.published import published_tables
    from agnes.services.registry import register_tables

    published = await asyncio.to_thread(published_tables, instance.settings.extracts_dir, source)
    uploaded = await _uploaded_names(instance, source)
    found = []
    for given in map(_as_discovered, tables):
        seen = published.get(given.name)
        if seen is not None:
            given = msgspec.structs.replace(given, columns=given.columns or seen.columns,
                                            description=given.description or seen.description)
        if given.native_id is None and given.name in uploaded:  # csv: the name the file was uploaded under
            given = msgspec.structs.replace(given, native_id=uploaded[given.name])
        found.append(given)
    return await register_tables(instance, source, found, actor_name="sync")


__all__ = ["ConfiguredSource", "RunSpec", "Source", "configure", "connector_run_spec", "delete_source",
           "ensure_external_source", "get_source", "get_type", "list_sources", "register_published_tables",
           "source_context", "update_source"]
