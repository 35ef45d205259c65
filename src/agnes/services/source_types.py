"""The one registry of source types: what `data_source` values Agnes understands.

Each type declares its options, its secrets (the key in the API body, the env
var the connector receives, an optional server-env fallback), a live `check`,
how to `discover` tables and whether its connector `extracts_all` tables.
Configure, provisioning, the export, discovery and the sync's run spec all
read these declarations, so adding a type (issue 5: keboola) is one more
`register(...)` call, never another code path.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import msgspec

from agnes.errors import AgnesError
from agnes.extract.names import normalize_table_name
from agnes.extract.runner import ConnectorInfo, check_requirements, list_connectors
from agnes.settings import BUILTIN_CONNECTORS_DIR, Settings

OptionKind = Literal["string", "integer", "boolean", "object"]


@dataclass(frozen=True)
class OptionSpec:
    name: str
    kind: OptionKind
    description: str
    required: bool = False
    default: Any = None
    fallback_env: str | None = None  # ENV_VARS name (Settings) used when neither the body nor the stored source sets it
    minimum: int | None = None  # integer options: the accepted range (inclusive)
    maximum: int | None = None


@dataclass(frozen=True)
class SecretSpec:
    name: str  # key in the API body and the provisioning entry, e.g. "keboola_token"
    env: str  # variable the connector receives, e.g. "KEBOOLA_STORAGE_TOKEN"
    description: str
    fallback_env: str | None = None  # ENV_VARS name (Settings) used when the body does not send it
    required: bool = True


class Column(msgspec.Struct, frozen=True):
    name: str
    type: str


class DiscoveredTable(msgspec.Struct, frozen=True, kw_only=True):
    """A table a source offers. `problem` set = found but unusable (reported as invalid)."""

    name: str
    native_id: str | None = None
    description: str | None = None
    columns: list[Column] = msgspec.field(default_factory=list)
    query_mode: Literal["local", "remote"] = "local"
    problem: str | None = None


@dataclass(frozen=True)
class SourceContext:
    """What a type's check/discover/run config may look at (secrets decrypted)."""

    name: str
    options: dict[str, Any]
    secrets: dict[str, str]
    settings: Settings

    @property
    def files_dir(self) -> Path:
        return self.settings.uploads_dir / self.name


def _connectors(settings: Settings) -> list[ConnectorInfo]:
    return list_connectors(BUILTIN_CONNECTORS_DIR, settings.custom_connectors_dir)


@dataclass(frozen=True)
class SourceType:
    """A data_source type. Subclass and override only what differs."""

    name: str
    description: str
    options: tuple[OptionSpec, ...] = ()
    secrets: tuple[SecretSpec, ...] = ()
    open_secrets: bool = False  # True: a free `secrets: {ENV_NAME: value}` object (custom connectors)
    extracts_all: bool = True  # False: the connector extracts only the registered tables
    configurable: bool = True  # False: created by Agnes itself (external = Tier B inbox)
    examples: dict[str, Any] = field(default_factory=dict)

    def default_name(self, options: dict[str, Any]) -> str:
        return self.name

    def connector_name(self, options: dict[str, Any]) -> str | None:
        return self.name

    def connector(self, ctx: SourceContext) -> ConnectorInfo:
        """The connector folder; AgnesError(connector_not_found) says where it should be."""
        wanted = self.connector_name(ctx.options)
        found = {c.name: c for c in _connectors(ctx.settings)}
        info = found.get(wanted or "")
        if info is None or info.origin != "builtin":
            raise AgnesError("connector_not_found",
                             f"The built-in connector {wanted!r} is missing from {BUILTIN_CONNECTORS_DIR}.",
                             hint="Reinstall Agnes (the image ships connectors/: `docker compose pull && "
                                  "docker compose up -d`); the folder needs extractor.py.")
        return info

    def run_config(self, ctx: SourceContext) -> dict[str, Any]:
        """AGNES_CONFIG_JSON for the connector: the non-secret options."""
        return dict(ctx.options)

    def secrets_env(self, secrets: dict[str, str]) -> dict[str, str]:
        """Secrets keyed by the env var names the connector reads."""
        by_name = {s.name: s.env for s in self.secrets}
        return {by_name.get(k, k): v for k, v in secrets.items()}

    async def check(self, ctx: SourceContext) -> None:
        """Live validation before anything is stored; raise AgnesError with a hint."""
        info = self.connector(ctx)
        problem = check_requirements(info)
        if problem:
            raise AgnesError("source_check_failed", problem)

    async def discover(self, ctx: SourceContext) -> list[DiscoveredTable]:
        return []


# --- sample ----------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _sample_tables() -> tuple[DiscoveredTable, ...]:
    import duckdb

    from agnes.extract.sample_data import DESCRIPTIONS, generate

    con = duckdb.connect()
    try:
        found = []
        for name, table in generate().items():
            con.register("t", table.slice(0, 0))
            rows = con.execute("DESCRIBE SELECT * FROM t").fetchall()
            con.unregister("t")
            found.append(DiscoveredTable(name=name, native_id=name, description=DESCRIPTIONS[name],
                                         columns=[Column(r[0], r[1]) for r in rows]))
        return tuple(found)
    finally:
        con.close()


@dataclass(frozen=True)
class SampleType(SourceType):
    async def discover(self, ctx: SourceContext) -> list[DiscoveredTable]:
        return list(await asyncio.to_thread(_sample_tables))


# --- csv -------------------------------------------------------------------------------

def staged_csv_files(folder: Path) -> list[Path]:
    """The files the csv connector would read: visible *.csv files, sorted."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() == ".csv" and not p.name.startswith("."))


def _discover_csv(folder: Path) -> list[DiscoveredTable]:
    from agnes.services.csv_checks import CsvProblem, inspect_csv

    found = []
    for path in staged_csv_files(folder):
        try:
            name = normalize_table_name(path.stem)
        except ValueError as e:
            found.append(DiscoveredTable(name=path.stem, native_id=path.name, problem=str(e)))
            continue
        try:
            info = inspect_csv(path)
        except (CsvProblem, OSError) as e:
            found.append(DiscoveredTable(name=name, native_id=path.name, problem=str(e)))
            continue
        found.append(DiscoveredTable(name=name, native_id=path.name, description=f"CSV file {path.name}",
                                     columns=[Column(n, t) for n, t in info.columns]))
    return found


@dataclass(frozen=True)
class CsvType(SourceType):
    def run_config(self, ctx: SourceContext) -> dict[str, Any]:
        return {**ctx.options, "files_dir": str(ctx.files_dir)}

    async def check(self, ctx: SourceContext) -> None:
        await super().check(ctx)
        folder = ctx.files_dir
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as e:
            raise AgnesError("source_check_failed", f"The upload folder {folder} is not writable: {e.strerror or e}",
                             hint="Fix the ownership of DATA_DIR (the container runs as uid 10001), then send POST "
                                  "/api/admin/configure again.") from e

    async def discover(self, ctx: SourceContext) -> list[DiscoveredTable]:
        return await asyncio.to_thread(_discover_csv, ctx.files_dir)


# --- custom (Tier A: a mounted connector folder) -----------------------------------------

@dataclass(frozen=True)
class CustomType(SourceType):
    def default_name(self, options: dict[str, Any]) -> str:
        return str(options.get("connector") or self.name)

    def connector_name(self, options: dict[str, Any]) -> str | None:
        return options.get("connector")

    def connector(self, ctx: SourceContext) -> ConnectorInfo:
        wanted = str(ctx.options.get("connector"))
        custom_dir = ctx.settings.custom_connectors_dir
        infos = {c.name: c for c in _connectors(ctx.settings)}
        info = infos.get(wanted)
        if info is not None and info.origin == "custom":
            return info
        if info is not None:
            raise AgnesError("connector_not_found", f"{wanted!r} is a built-in connector, not a custom one.",
                             hint=f"Send POST /api/admin/configure {{\"data_source\": \"{wanted}\"}}, or rename your "
                                  f"folder in {custom_dir}.")
        available = sorted(n for n, c in infos.items() if c.origin == "custom")
        raise AgnesError(
            "connector_not_found",
            f"No custom connector {wanted!r}: {custom_dir / wanted} does not exist or has no extractor.py. "
            f"Custom connectors found: {', '.join(available) or 'none'}.",
            hint=f"Put the connector folder (with extractor.py) in {custom_dir} (AGNES_CUSTOM_CONNECTORS_DIR), "
                 "or set `connector` to one of the folders listed.")

    def run_config(self, ctx: SourceContext) -> dict[str, Any]:
        return dict(ctx.options.get("options") or {})


# --- external (Tier B: an outside container drops runs into the inbox) -------------------

@dataclass(frozen=True)
class ExternalType(SourceType):
    def connector_name(self, options: dict[str, Any]) -> str | None:
        return None

    async def check(self, ctx: SourceContext) -> None:
        return None


# --- keboola (Storage API over HTTP; tables extracted as typed parquet) -------------------

def _keboola_call(ctx: SourceContext, call: Any, timeout: float = 30.0) -> Any:
    """Run `call(api)` with a Storage API client; Keboola's refusals become AgnesErrors with a hint."""
    from agnes.extract.keboola.api import KeboolaError, StorageApi

    url, token = str(ctx.options.get("keboola_url") or ""), ctx.secrets.get("keboola_token") or ""
    try:
        with StorageApi(url, token, timeout=timeout, retries=1, max_retry_after=5.0) as api:
            return call(api)
    except KeboolaError as e:
        if e.kind == "auth":
            raise AgnesError("invalid_credentials", f"Keboola rejected the Storage API token for {url}: {e.message}",
                             status=400, hint="Send a valid token as keboola_token (Keboola: Settings -> API Tokens; "
                             "it needs read access to the buckets to extract), or fix KEBOOLA_STORAGE_TOKEN in the "
                             "server environment; check keboola_url is the token's stack.") from None
        raise AgnesError("source_check_failed", f"Keboola Storage API at {url}: {e.message}",
                         hint="Check keboola_url (the stack URL, e.g. https://connection.keboola.com or "
                              "KEBOOLA_STACK_URL) and that this server can reach it.") from None


def _keboola_tables(ctx: SourceContext) -> list[DiscoveredTable]:
    from agnes.extract.keboola.coltypes import description, table_types

    found = []
    for table in _keboola_call(ctx, lambda api: api.tables(), timeout=120.0):  # big projects list slowly
        native = str(table.get("id"))
        try:
            name = normalize_table_name(native)
        except ValueError as e:
            found.append(DiscoveredTable(name=native, native_id=native, problem=str(e)))
            continue
        found.append(DiscoveredTable(name=name, native_id=native, description=description(table),
                                     columns=[Column(c, t) for c, t in table_types(table)]))
    return found


@dataclass(frozen=True)
class KeboolaType(SourceType):
    def run_config(self, ctx: SourceContext) -> dict[str, Any]:
        config = dict(ctx.options)
        kbc = ctx.settings.keboola
        endpoints = {k: v for k, v in (("s3", kbc.s3_endpoint_url), ("gcs", kbc.gcs_endpoint_url)) if v}
        if endpoints:  # tests and local demos only: cloud storage emulators (moto, fake GCS)
            config["storage_endpoints"] = endpoints
        return config

    async def check(self, ctx: SourceContext) -> None:
        from agnes.extract.keboola.api import plain_http_to_remote

        await super().check(ctx)
        url = str(ctx.options.get("keboola_url") or "")
        if not url.strip().startswith(("http://", "https://")) or plain_http_to_remote(url):
            raise AgnesError("invalid_option", f"keboola_url {url!r} must be an https:// stack URL (plain http:// is "
                             "allowed only to this machine, for the local test server).",
                             hint='Send e.g. "keboola_url": "https://connection.keboola.com" (your stack URL, also '
                                  "KEBOOLA_STACK_URL); the Storage API token must never travel unencrypted.")
        reload_before = ctx.options.get("full_reload_before")
        if reload_before is not None:
            try:
                datetime.fromisoformat(str(reload_before).replace("Z", "+00:00"))
            except ValueError:
                raise AgnesError("invalid_option", f"full_reload_before {reload_before!r} is not an ISO 8601 time.",
                                 hint='Send e.g. "full_reload_before": "2026-01-31T12:00:00Z" (UTC), or null to '
                                      "remove it, with POST /api/admin/configure.") from None
        await asyncio.to_thread(_keboola_call, ctx, lambda api: api.buckets())

    async def discover(self, ctx: SourceContext) -> list[DiscoveredTable]:
        return await asyncio.to_thread(_keboola_tables, ctx)


# --- the registry ----------------------------------------------------------------------

SOURCE_TYPES: dict[str, SourceType] = {}


def register(source_type: SourceType) -> SourceType:
    SOURCE_TYPES[source_type.name] = source_type
    return source_type


def configurable_types() -> list[str]:
    return sorted(n for n, t in SOURCE_TYPES.items() if t.configurable)


def get_type(name: Any) -> SourceType:
    """The configurable type called `name`, else unsupported_data_source listing them."""
    supported = ", ".join(configurable_types())
    source_type = SOURCE_TYPES.get(name) if isinstance(name, str) else None
    if source_type is None:
        raise AgnesError("unsupported_data_source", f"data_source {name!r} is not supported; supported: {supported}.",
                         hint=f"Send data_source as one of: {supported} to POST /api/admin/configure, "
                              f"e.g. {{\"data_source\": \"sample\"}}.")
    if not source_type.configurable:
        raise AgnesError("unsupported_data_source",
                         f"data_source {name!r} cannot be configured through the API: an external (Tier B) source is "
                         f"registered when its first run appears in $DATA_DIR/inbox/<name>/ with a READY marker.",
                         hint=f"Drop the run into $DATA_DIR/inbox/{name}/ (READY last) instead, or configure one of: "
                              f"{supported} with POST /api/admin/configure.")
    return source_type


def type_of(name: str) -> SourceType | None:
    """Any registered type (configurable or not); None for a type this version does not know."""
    return SOURCE_TYPES.get(name)


register(SampleType("sample", "Deterministic demo data (customers, products, orders); no options, no secrets."))
register(CsvType("csv", "CSV files uploaded with POST /api/admin/uploads?source=NAME; each file becomes a table."))
register(CustomType(
    "custom",
    "A mounted connector folder (Tier A) in the custom connectors directory.",
    options=(
        OptionSpec("connector", "string", "Folder name of the connector in the custom connectors directory.",
                   required=True),
        OptionSpec("options", "object", "Non-secret options given to the connector as AGNES_CONFIG_JSON.",
                   default={}),
    ),
    open_secrets=True,
    examples={"data_source": "custom", "connector": "my_api", "options": {"base_url": "https://api.example.com"},
              "secrets": {"MY_API_KEY": "..."}},
))
register(KeboolaType(
    "keboola",
    "Keboola Connection: tables exported through the Storage API as typed parquet (incremental by primary key).",
    options=(
        OptionSpec("keboola_url", "string", "The stack URL, e.g. https://connection.keboola.com (/v2/storage is "
                   "added); default: KEBOOLA_STACK_URL on the server.", required=True,
                   fallback_env="KEBOOLA_STACK_URL"),
        OptionSpec("incremental", "boolean", "Export tables with a primary key incrementally (changedSince) and merge "
                   "by primary key; false = full export every sync.", default=True),
        OptionSpec("changed_since_safety_seconds", "integer", "How far before the last export's cursor an "
                   "incremental export starts, in seconds, 0..604800 (covers imports in flight).", default=600,
                   minimum=0, maximum=7 * 86400),
        OptionSpec("export_timeout_seconds", "integer", "Longest wait for one table's Keboola export job, in "
                   "seconds, 10..86400; then that table fails and the others go on.", default=3600, minimum=10,
                   maximum=86400),
        OptionSpec("export_workers", "integer", "Tables exported at the same time, 1..16.", default=4, minimum=1,
                   maximum=16),
        OptionSpec("download_workers", "integer", "Slices of one table downloaded at the same time, 1..64.",
                   default=8, minimum=1, maximum=64),
        OptionSpec("full_reload_before", "string", "Full reload on demand: a UTC time (ISO 8601, e.g. "
                   "2026-01-31T12:00:00Z); the next sync exports fully every table last fully exported before it, "
                   "later syncs are incremental again."),
    ),
    secrets=(SecretSpec("keboola_token", "KEBOOLA_STORAGE_TOKEN", "a Keboola Storage API token (KEBOOLA_STORAGE_TOKEN)",
                        fallback_env="KEBOOLA_STORAGE_TOKEN"),),
    extracts_all=False,
    examples={"data_source": "keboola", "keboola_url": "https://connection.keboola.com", "keboola_token": "..."},
))
register(ExternalType("external", "Runs dropped by an outside container into $DATA_DIR/inbox/<name>/ (Tier B).",
                      configurable=False))

