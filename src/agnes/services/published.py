"""Descriptions and columns of a source's published run, for the registry.

A sync reports which tables it published but not their columns; drift
detection needs them, so they are read here from the run that is now
served: `_meta` for descriptions and query modes, and for local tables the
schema of their data (parquet or a base table) — never an extract's views.
The run is held (shared lock) while read, so publishing cannot prune it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb
from contract_tests.spec import TABLE_NAME_RE

from agnes.engine.publish import current_run, hold_run, release_run
from agnes.services.source_types import Column, DiscoveredTable

log = logging.getLogger(__name__)


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _data_sql(run: Path, name: str, base_tables: set[str]) -> str | None:
    data = run / "data"
    if (data / f"{name}.parquet").is_file():
        return f"SELECT * FROM read_parquet({_lit(str(data / f'{name}.parquet'))})"
    if (data / name).is_dir():
        return f"SELECT * FROM read_parquet({_lit(str(data / name / '*.parquet'))})"
    if name in base_tables:
        return f'SELECT * FROM x.main."{name}"'
    return None


def _read(run: Path) -> dict[str, DiscoveredTable]:
    con = duckdb.connect(config={"threads": 1})
    try:
        con.execute(f"ATTACH {_lit(str(run / 'extract.duckdb'))} AS x (READ_ONLY)")
        meta = con.execute("SELECT table_name, description, coalesce(query_mode, 'local') FROM x.main._meta").fetchall()
        base = {r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = 'x' AND schema_name = 'main'").fetchall()}
        found: dict[str, DiscoveredTable] = {}
        for name, description, mode in meta:
            if not isinstance(name, str) or not TABLE_NAME_RE.match(name):
                continue
            columns: list[Column] = []
            sql = _data_sql(run, name, base) if mode == "local" else None
            if sql is not None:
                columns = [Column(r[0], r[1]) for r in con.execute(f"DESCRIBE {sql}").fetchall()]
            found[name] = DiscoveredTable(name=name, description=description, columns=columns,
                                          query_mode="remote" if mode == "remote" else "local")
        return found
    finally:
        con.close()


def published_tables(extracts_dir: Path, source: str) -> dict[str, DiscoveredTable]:
    """name -> table as published now; {} when nothing is published or the run cannot be read."""
    run = current_run(extracts_dir, source)
    if run is None:
        return {}
    fd = hold_run(run)
    try:
        return _read(run)
    except (duckdb.Error, OSError):
        log.exception("cannot read the published run %s of %s", run, source)
        return {}
    finally:
        release_run(fd)
