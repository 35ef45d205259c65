"""Carry tables of the previous run into a new staging folder before validation.

Why: a run folder replaces the whole source when it is published. A table
the connector reported failed (or that a table-subset sync did not extract)
would silently disappear from serving. Instead its previous data is copied
in, byte for byte, with its previous `_meta` row, so `extracted_at` still
says how old it is (freshness stays honest) and the new run is complete.

Parquet files are hard-linked (runs are immutable, so sharing inodes is
safe; a copy is the fallback across file systems); a base table inside
extract.duckdb is copied through a READ_ONLY attach. A remote table cannot be
carried (its view binds to a live remote database), so the caller keeps the
whole previous run serving instead.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb

EXTRACT = "extract.duckdb"


class CarryOverError(Exception):
    """A table of the previous run cannot be carried into the new one."""


@dataclass(frozen=True)
class Carried:
    table: str
    extracted_at: str | None


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _meta_rows(db: Path) -> dict[str, tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute("SELECT table_name, description, rows, size_bytes, extracted_at, query_mode "
                           "FROM _meta").fetchall()
    finally:
        con.close()
    return {r[0]: r for r in rows}


def carry_over(staging: Path, previous: Path | None, failed: set[str], requested: list[str] | None) -> list[Carried]:
    """Copy into `staging` the tables of `previous` it lacks that failed or were not requested.

    `requested` None means every table was requested (a full sync: a table the
    connector no longer writes and did not report failed is gone at the source).
    Raises CarryOverError when such a table is remote or its data is missing.
    """
    staging_db = staging / EXTRACT
    if previous is None or not staging_db.is_file() or not (previous / EXTRACT).is_file():
        return []
    old = _meta_rows(previous / EXTRACT)
    have = _meta_rows(staging_db)
    wanted = sorted(t for t in old if t not in have and (t in failed or (requested is not None
                                                                        and t not in requested)))
    if not wanted:
        return []
    base_tables: list[str] = []
    for table in wanted:
        if (old[table][5] or "local") != "local":
            raise CarryOverError(f"table {table!r} is a remote table and cannot be kept from the previous run")
        src_file, src_dir = previous / "data" / f"{table}.parquet", previous / "data" / table
        (staging / "data").mkdir(exist_ok=True)
        if src_file.is_file():
            _link_or_copy(src_file, staging / "data" / f"{table}.parquet")
        elif src_dir.is_dir():
            (staging / "data" / table).mkdir()
            for part in sorted(src_dir.glob("*.parquet")):
                _link_or_copy(part, staging / "data" / table / part.name)
        else:
            base_tables.append(table)
    con = duckdb.connect(str(staging_db))
    try:
        con.execute(f"ATTACH {_literal(previous / EXTRACT)} AS prev (READ_ONLY)")
        existing = {r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = 'prev' AND schema_name = 'main'"
        ).fetchall()}
        for table in base_tables:
            if table not in existing:
                raise CarryOverError(f"table {table!r} has no data in the previous run to keep")
            con.execute(f"CREATE TABLE main.{_quote(table)} AS SELECT * FROM prev.main.{_quote(table)}")
        for table in wanted:
            con.execute("INSERT INTO main._meta (table_name, description, rows, size_bytes, extracted_at, "
                        "query_mode) VALUES (?, ?, ?, ?, ?, ?)", list(old[table]))
        con.execute("DETACH prev")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return [Carried(t, old[t][4].isoformat() if old[t][4] is not None else None) for t in wanted]


def _literal(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"
