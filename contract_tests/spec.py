"""The frozen extract contract as Python constants.

Column names and types are parsed from `spec/meta.sql` and
`spec/remote_attach.sql` by DuckDB itself, so those files stay the single
source of truth and the types come out in DuckDB's canonical spelling (the
same spelling `duckdb_columns()` reports for an author's extract).
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

SPEC_DIR = Path(__file__).parent / "spec"
META_SQL = SPEC_DIR / "meta.sql"
REMOTE_ATTACH_SQL = SPEC_DIR / "remote_attach.sql"
RULES_MD = SPEC_DIR / "rules.md"

META_TABLE = "_meta"
REMOTE_ATTACH_TABLE = "_remote_attach"
CONTRACT_TABLES = (META_TABLE, REMOTE_ATTACH_TABLE)

PINNED_DUCKDB = "1.5.5"
QUERY_MODES = ("local", "remote")

SOURCE_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
TABLE_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,127}$")
TABLE_NAME_MAX = 128
ENV_VAR_NAME_RE = re.compile(r"^[A-Z_][A-Z0-9_]*$")
#: `_remote_attach.extension`: a DuckDB extension name (the engine ATTACHes with TYPE <extension>).
EXTENSION_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")

#: Clock skew tolerated before `extracted_at` counts as "in the future".
FUTURE_SKEW_SECONDS = 300

#: Names that are never a source (they are DuckDB's own catalogs/schemas).
BUILTIN_RESERVED = frozenset({"main", "system", "temp", "memory", "information_schema", "pg_catalog"})

#: Tables of the contract itself; no data table may take their name.
RESERVED_TABLE_NAMES = frozenset(CONTRACT_TABLES)

#: Every DuckDB keyword is reserved as a source name except the `unreserved`
#: ones (design.md "Names": "not a reserved word … DuckDB keywords").
#: Unreserved keywords (`sample`, `csv`, `data` …) work unquoted everywhere and
#: are the default source names, so they stay allowed. `column_name` keywords
#: (`values`, `integer`, `time` …) are refused too: they cannot be a bare
#: identifier in every position.
ALLOWED_KEYWORD_CATEGORY = "unreserved"


def _parse_columns(sql_file: Path, table: str) -> dict[str, str]:
    """Ordered column name -> canonical DuckDB type, by running the DDL in memory."""
    con = duckdb.connect(":memory:")
    try:
        con.execute(sql_file.read_text(encoding="utf-8"))
        rows = con.execute(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? ORDER BY column_index",
            [table],
        ).fetchall()
    finally:
        con.close()
    if not rows:
        raise RuntimeError(f"{sql_file} does not define table {table}")
    return {name: dtype for name, dtype in rows}


def _parse_constraints(sql_file: Path, table: str) -> dict[str, tuple[bool, str | None]]:
    """Column name -> (NOT NULL?, DEFAULT as DuckDB prints it), by running the DDL in memory."""
    con = duckdb.connect(":memory:")
    try:
        con.execute(sql_file.read_text(encoding="utf-8"))
        rows = con.execute(
            "SELECT column_name, NOT is_nullable, column_default FROM duckdb_columns() WHERE table_name = ? "
            "ORDER BY column_index",
            [table],
        ).fetchall()
    finally:
        con.close()
    return {name: (bool(not_null), default) for name, not_null, default in rows}


def _duckdb_reserved_keywords() -> frozenset[str]:
    con = duckdb.connect(":memory:")
    try:
        rows = con.execute(
            "SELECT keyword_name FROM duckdb_keywords() WHERE keyword_category <> ?", [ALLOWED_KEYWORD_CATEGORY]
        ).fetchall()
    finally:
        con.close()
    return frozenset(r[0].lower() for r in rows)


META_COLUMNS: dict[str, str] = _parse_columns(META_SQL, META_TABLE)
REMOTE_ATTACH_COLUMNS: dict[str, str] = _parse_columns(REMOTE_ATTACH_SQL, REMOTE_ATTACH_TABLE)
#: Column name -> (NOT NULL?, DEFAULT expression or None), as the spec DDL declares them.
META_CONSTRAINTS: dict[str, tuple[bool, str | None]] = _parse_constraints(META_SQL, META_TABLE)
REMOTE_ATTACH_CONSTRAINTS: dict[str, tuple[bool, str | None]] = _parse_constraints(
    REMOTE_ATTACH_SQL, REMOTE_ATTACH_TABLE
)
DUCKDB_RESERVED_KEYWORDS: frozenset[str] = _duckdb_reserved_keywords()
RESERVED_SOURCE_NAMES: frozenset[str] = BUILTIN_RESERVED | DUCKDB_RESERVED_KEYWORDS
