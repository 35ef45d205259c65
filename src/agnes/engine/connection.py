"""The ONE place that creates DuckDB connections for serving, and locks them down.

Measured on DuckDB 1.5.5 (see tests/unit/test_engine_connection.py):
- after `enable_external_access=false` + `lock_configuration=true`, ATTACHing a
  new `extract.duckdb` READ_ONLY and `read_parquet` keep working for paths under
  `allowed_directories` -- so one long-lived catalog can attach new runs later;
- `LOAD` is refused after the lock, and the postgres extension refuses to ATTACH
  ("disabled through configuration"); extensions are loaded and network
  databases attached while a connection is still trusted (see catalog.py);
- `allowed_directories` also permits WRITES (COPY TO) there: user SQL must be
  SELECT-only (the query guard), and nothing but our own runs live there;
- the sqlite extension ignores the lock (`sqlite_scan` reads any file): it is
  loaded only when a source declares it, and the query guard must refuse table
  functions and ATTACH in user SQL;
- `duckdb_extensions()` reads the extension folder, so it fails after the lock.
Give the serving policy `temp_directory` and `extension_directory` under
`$DATA_DIR/analytics/` (the container's home may not be writable).
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import duckdb

# DuckDB's internal names for extensions whose user-facing name differs.
_EXTENSION_ALIASES = {"postgres": "postgres_scanner", "sqlite": "sqlite_scanner", "mysql": "mysql_scanner"}


class ExtensionUnavailable(Exception):
    """An extension is needed but no offline copy of it is installed."""


@dataclass(frozen=True)
class ConnectionPolicy:
    """Resource caps and scratch folders of the serving DuckDB."""

    threads: int = 4
    memory_limit: str = "2GB"
    max_temp_directory_size: str = "4GB"
    temp_directory: Path | None = None
    extension_directory: Path | None = None


def open_connection(policy: ConnectionPolicy) -> duckdb.DuckDBPyConnection:
    """An in-memory database that never downloads or auto-loads anything."""
    config: dict[str, str] = {
        "autoinstall_known_extensions": "false",
        "autoload_known_extensions": "false",
        "allow_community_extensions": "false",
        "allow_persistent_secrets": "false",
        "python_enable_replacements": "false",  # else unknown table names resolve to the caller's variables
        "threads": str(policy.threads),
        "memory_limit": policy.memory_limit,
        "max_temp_directory_size": policy.max_temp_directory_size,
    }
    if policy.temp_directory is not None:
        Path(policy.temp_directory).mkdir(parents=True, exist_ok=True)
        config["temp_directory"] = str(policy.temp_directory)
    if policy.extension_directory is not None:
        Path(policy.extension_directory).mkdir(parents=True, exist_ok=True)
        config["extension_directory"] = str(policy.extension_directory)
    con = duckdb.connect(":memory:", config=config)
    con.execute("SET parquet_metadata_cache = true")  # runs are immutable: cached footers stay right
    return con


def open_inspection(db: Path) -> duckdb.DuckDBPyConnection:
    """A separate, read-only, locked look at one extract file (lists its objects; runs nothing)."""
    config = {
        "enable_external_access": "false",
        "autoload_known_extensions": "false",
        "autoinstall_known_extensions": "false",
        "allow_community_extensions": "false",
        "threads": "1",
    }
    return duckdb.connect(str(db), read_only=True, config=config)


def open_parser(max_expression_depth: int) -> duckdb.DuckDBPyConnection:
    """An empty, locked database that only parses and prints user SQL for the query guard.

    External access is off even here: IMPORT DATABASE reads files while *parsing*. One per
    worker thread (the guard keeps them thread-local), so checks never wait on each other.
    """
    con = duckdb.connect(":memory:", config={
        "enable_external_access": "false", "autoload_known_extensions": "false",
        "autoinstall_known_extensions": "false", "allow_community_extensions": "false",
        "python_enable_replacements": "false", "threads": "1",
        "max_expression_depth": str(max_expression_depth),
    })
    return con


def lock_down(con: duckdb.DuckDBPyConnection, allowed_directories: list[Path]) -> None:
    """No file access outside our data folders, and no way to change that afterwards."""
    dirs = [str(Path(d).resolve()).rstrip("/") + "/" for d in allowed_directories]
    con.execute("SET allowed_directories = ?", [dirs])
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def loaded_extensions(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute("SELECT extension_name, aliases FROM duckdb_extensions() WHERE loaded").fetchall()
    names: set[str] = set()
    for name, aliases in rows:
        names.add(name)
        names.update(aliases or [])
    return names


def load_extension(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """LOAD an extension, installing it first from an offline wheel -- never from the network."""
    if not name.replace("_", "").isalnum():
        raise ExtensionUnavailable(f"invalid extension name {name!r}")
    internal = _EXTENSION_ALIASES.get(name, name)
    if {name, internal} & loaded_extensions(con):
        return
    installed = con.execute(
        "SELECT count(*) FROM duckdb_extensions() WHERE installed AND extension_name = ?", [internal]
    ).fetchone()[0]
    if not installed:
        _install_offline(con, name)
    con.execute(f"LOAD {name}")


def offline_extension_file(name: str) -> Path | None:
    """The extension binary shipped by the pip package `duckdb-extension-<name>`, if any."""
    spec = importlib.util.find_spec(f"duckdb_extension_{name}")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        candidate = Path(root) / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
        if candidate.is_file():
            return candidate
    return None


def _install_offline(con: duckdb.DuckDBPyConnection, name: str) -> None:
    if importlib.util.find_spec("duckdb_extensions") is not None:
        helper = importlib.import_module("duckdb_extensions")
        helper.import_extension(name, con=con)
        return
    path = offline_extension_file(name)
    if path is None:
        raise ExtensionUnavailable(
            f"DuckDB extension {name!r} is not installed and Agnes never downloads extensions; "
            f"add the pip package duckdb-extension-{name}=={duckdb.__version__} to the image"
        )
    con.execute(f"INSTALL {sql_literal(str(path))}")


def sql_literal(value: str) -> str:
    """A single-quoted SQL string literal."""
    return "'" + _sql_str(value) + "'"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_str(value: str) -> str:
    return value.replace("'", "''")
