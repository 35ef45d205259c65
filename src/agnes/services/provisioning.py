"""Apply the sources declared in the provisioning file (`sources:` in config/instance.yaml) at start.

Declarative for what it declares: each entry goes through the same `configure`
as the API, so applying the same file again changes nothing, and a key the
entry sets (an option, a secret, schedule, visible_to_all) wins over an API
edit of it at the next start, while keys the entry omits keep their current
value. Sources are never deleted here: remove one with DELETE
/api/admin/sources/{name}. (When the file is Agnes' own export, it already
holds the API's edits, so nothing changes.)

Secrets are `${ENV_NAME}` references only. A referenced variable that is not
set stops the start with the file, line and variable, unless that secret is
already stored (the export of an instance whose secrets came in through the
API refers to variables nobody set; the stored value is kept). An unknown
`data_source` is a health warning, so an older image still starts after a rollback.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

from agnes.control import sources as sources_repo
from agnes.errors import AgnesError, StartupError
from agnes.services.config_export import atomic_write, render
from agnes.services.instance import Instance
from agnes.services.source_options import check_name
from agnes.services.source_types import SourceType, configurable_types, type_of

log = logging.getLogger(__name__)
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ONLY_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


class _Missing(Exception):
    def __init__(self, variable: str) -> None:
        self.variable = variable


def _substitute(value: Any) -> Any:
    """Resolve ${NAME} in every string of a (nested) option value."""
    if isinstance(value, str):
        def one(m: re.Match[str]) -> str:
            found = os.environ.get(m[1])
            if found is None or found == "":
                raise _Missing(m[1])
            return found
        return ENV_REF.sub(one, value)
    if isinstance(value, dict):
        return {k: _substitute(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v) for v in value]
    return value


def _secret_items(stype: SourceType, entry: dict[str, Any]) -> list[tuple[str, Any, bool]]:
    """(key, value, nested under `secrets`) of every secret in an entry."""
    names = {s.name for s in stype.secrets}
    items = [(k, v, False) for k, v in entry.items() if k in names]
    if stype.open_secrets and isinstance(entry.get("secrets"), dict):
        items += [(k, v, True) for k, v in entry["secrets"].items()]
    return items


def resolve_entry(stype: SourceType, entry: dict[str, Any], stored: set[str],
                  where: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The configure body for one entry and {secret key: env var} it came from."""
    body: dict[str, Any] = {}
    refs: dict[str, str] = {}
    secret_keys = {k for k, _, nested in _secret_items(stype, entry) if not nested}
    for key, value in entry.items():
        if key in secret_keys or (key == "secrets" and stype.open_secrets):
            continue
        try:
            body[key] = _substitute(value)
        except _Missing as m:
            raise StartupError("config_invalid", f"{where}: {key}: environment variable {m.variable} is not set.",
                               hint=f"Set {m.variable} in the environment (.env), or change {key} in the file, "
                                    "then start again (`agnes serve`, or `docker compose up -d`)."
                               ) from None
    if stype.open_secrets and isinstance(entry.get("secrets"), dict):
        body["secrets"] = {}
    elif stype.open_secrets and "secrets" in entry:
        body["secrets"] = entry["secrets"]  # a wrong shape: configure names it
    for key, value, nested in _secret_items(stype, entry):
        match = _ONLY_REF.match(value) if isinstance(value, str) else None
        if match is None:
            raise StartupError("config_invalid", f"{where}: secret {key!r} must be an ${{ENV_NAME}} reference, "
                               "not a literal value: this file is not encrypted.",
                               hint=f"Write {key}: ${{SOME_VARIABLE}}, set SOME_VARIABLE in the environment "
                                    "(.env), then start again (`agnes serve`, or `docker compose up -d`).")
        variable = match[1]
        value = os.environ.get(variable) or None
        if value is None:
            if key in stored:
                log.info("%s: %s is not set; keeping the stored secret %s", where, variable, key)
                continue
            raise StartupError("config_invalid", f"{where}: secret {key!r} refers to environment variable "
                               f"{variable}, which is not set.",
                               hint=f"Set {variable} in the environment (.env) and restart, or remove {key} from the "
                                    "file and send it with POST /api/admin/configure.")
        (body["secrets"] if nested else body)[key] = value
        refs[key] = variable
    return body, refs


async def apply_provisioning(instance: Instance) -> list[str]:
    """Configure every declared source; returns (and adds to instance.warnings) what was skipped."""
    from agnes.services.sources import configure

    settings = instance.settings
    warnings: list[str] = []
    seen: dict[str, str] = {}
    for index, entry in enumerate(settings.sources):
        where = settings.source_origin(index)
        stype = type_of(entry.get("data_source"))
        if stype is None or not stype.configurable:
            why = "is not supported by this version" if stype is None else "is registered by the inbox, not here"
            warnings.append(f"{where}: source skipped: data_source {entry.get('data_source')!r} {why} "
                            f"(supported: {', '.join(configurable_types())})")
            continue
        try:
            name = check_name(entry["name"]) if entry.get("name") is not None else None
            async with instance.control.read() as conn:
                default = stype.default_name({**{o.name: o.default for o in stype.options}, **entry})
                stored = {r["key"] for r in await sources_repo.secrets_of(conn, name or default)}
            body, refs = resolve_entry(stype, entry, stored, where)
            name = name or check_name(default)
            if name in seen:
                raise StartupError("config_invalid", f"{where}: source {name!r} is declared twice (first at "
                                   f"{seen[name]}).", hint="Give one of them another `name:`, then start again "
                                                           "(`agnes serve`, or `docker compose up -d`).")
            seen[name] = where
            checks: list[str] = []
            await configure(instance, None, body, origin="provisioning", secret_refs=refs, check_warnings=checks)
            warnings += [f"{where}: stored, but its check failed: {w}" for w in checks]
        except StartupError:
            raise
        except AgnesError as e:
            raise StartupError("config_invalid", f"{where}: {e.message}", hint=e.hint) from None
    warnings += await apply_env_sources(instance)
    instance.warnings.extend(warnings)
    for warning in warnings:
        log.warning(warning)
    await _write_missing_export(instance)
    return warnings


async def apply_env_sources(instance: Instance) -> list[str]:
    """KEBOOLA_STORAGE_TOKEN + KEBOOLA_STACK_URL at first start: create a `keboola` source (once).

    Its first sync then discovers and registers the project's tables on its own (the
    source's auto_discover flag). Once considered, never again: deleting the source
    does not bring it back at the next start.
    """
    from agnes.control import kv

    settings = instance.settings
    if not (settings.env_setting("KEBOOLA_STORAGE_TOKEN") and settings.env_setting("KEBOOLA_STACK_URL")):
        return []
    async with instance.control.read() as conn:
        if await kv.get(conn, kv.KEBOOLA_ENV_SOURCE) is not None:
            return []
        rows = await sources_repo.list_all(conn)
    warnings: list[str] = []
    existing = next((r["name"] for r in rows if r["type"] == "keboola"), None)
    taken = next((r for r in rows if r["name"] == "keboola"), None)
    if existing is not None:
        log.info("KEBOOLA_STORAGE_TOKEN is set and source %r already reads Keboola; nothing created", existing)
    elif taken is not None:
        warnings.append(f"KEBOOLA_STORAGE_TOKEN is set, but the source name 'keboola' is taken by a "
                        f"{taken['type']} source; configure Keboola with POST /api/admin/configure "
                        "{data_source: 'keboola', name: ...}")
    else:
        from agnes.services.sources import configure

        checks: list[str] = []
        await configure(instance, None, {"data_source": "keboola"}, origin="environment", check_warnings=checks)
        warnings += [f"environment: source 'keboola' stored, but its check failed: {w}" for w in checks]
        log.info("created source 'keboola' from KEBOOLA_STORAGE_TOKEN/KEBOOLA_STACK_URL; its first sync "
                 "registers the project's tables")
    async with instance.control.transaction() as conn:
        await kv.put(conn, kv.KEBOOLA_ENV_SOURCE, "considered")
    return warnings


async def _write_missing_export(instance: Instance) -> None:
    """Sources but no export yet (first start after an upgrade, or a deleted file): write it once."""
    path = instance.settings.export_config_path
    if path.exists():
        return
    async with instance.control.read() as conn:
        rows = await sources_repo.list_all(conn)
        refs = await sources_repo.secret_refs(conn)
    if rows:
        atomic_write(path, render(instance.settings, rows, refs))
