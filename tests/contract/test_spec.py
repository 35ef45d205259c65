"""The frozen spec files and the constants parsed from them."""

from __future__ import annotations

import ast
from pathlib import Path

import duckdb
from contract_tests import spec

# The contract is frozen: these are the exact statements of design.md. A change
# here is a BREAKING change to every connector, not a refactor.
META_SQL = """CREATE TABLE _meta (
  table_name   VARCHAR NOT NULL,   -- also the view name inside extract.duckdb
  description  VARCHAR,
  rows         BIGINT,
  size_bytes   BIGINT,
  extracted_at TIMESTAMP,          -- when the data was pulled (freshness = this)
  query_mode   VARCHAR DEFAULT 'local'   -- 'local' | 'remote'
);
"""
REMOTE_ATTACH_SQL = """CREATE TABLE _remote_attach (      -- optional: remote (pass-through) tables
  alias     VARCHAR,   -- ATTACH alias used by the views, e.g. 'kbc', 'pg'
  extension VARCHAR,   -- DuckDB extension, e.g. 'postgres', 'bigquery'
  url       VARCHAR,   -- connection string, without the secret
  token_env VARCHAR    -- NAME of the env var that holds the secret, never the secret
);
"""


def test_spec_files_hold_the_frozen_sql_verbatim() -> None:
    assert spec.META_SQL.read_text(encoding="utf-8") == META_SQL
    assert spec.REMOTE_ATTACH_SQL.read_text(encoding="utf-8") == REMOTE_ATTACH_SQL


def test_columns_are_parsed_from_the_sql_files_in_order() -> None:
    assert list(spec.META_COLUMNS.items()) == [
        ("table_name", "VARCHAR"),
        ("description", "VARCHAR"),
        ("rows", "BIGINT"),
        ("size_bytes", "BIGINT"),
        ("extracted_at", "TIMESTAMP"),
        ("query_mode", "VARCHAR"),
    ]
    assert list(spec.REMOTE_ATTACH_COLUMNS.items()) == [
        ("alias", "VARCHAR"),
        ("extension", "VARCHAR"),
        ("url", "VARCHAR"),
        ("token_env", "VARCHAR"),
    ]


def test_meta_sql_keeps_its_default_and_not_null() -> None:
    con = duckdb.connect()
    con.execute(META_SQL)
    con.execute("INSERT INTO _meta (table_name) VALUES ('t')")
    assert con.execute("SELECT query_mode FROM _meta").fetchone() == ("local",)
    try:
        con.execute("INSERT INTO _meta (description) VALUES ('no name')")
    except duckdb.ConstraintException:
        pass
    else:
        raise AssertionError("table_name must be NOT NULL")


def test_rules_name_the_pinned_duckdb_and_utc() -> None:
    rules = spec.RULES_MD.read_text(encoding="utf-8")
    assert "duckdb==1.5.5" in rules
    assert "UTC" in rules
    assert "^[a-z][a-z0-9_]{0,62}$" in rules and "^[a-z_][a-z0-9_]{0,127}$" in rules
    assert spec.PINNED_DUCKDB == "1.5.5" == duckdb.__version__
    assert spec.QUERY_MODES == ("local", "remote")


def test_name_rules() -> None:
    assert spec.SOURCE_NAME_RE.match("keboola") and spec.SOURCE_NAME_RE.match("a" * 63)
    assert not spec.SOURCE_NAME_RE.match("a" * 64)
    assert not spec.SOURCE_NAME_RE.match("_x") and not spec.SOURCE_NAME_RE.match("1x")
    assert spec.TABLE_NAME_RE.match("_x") and spec.TABLE_NAME_RE.match("a" * 128)
    assert not spec.TABLE_NAME_RE.match("a" * 129)
    for bad in ("Orders", "1x", "in-c-crm", "a.b", "a b", ""):
        assert not spec.TABLE_NAME_RE.match(bad), bad


def test_reserved_names_include_duckdb_catalogs_and_keywords() -> None:
    for name in ("main", "system", "temp", "memory", "information_schema", "pg_catalog", "select", "order"):
        assert name in spec.RESERVED_SOURCE_NAMES, name
    # design.md "Names": no DuckDB keyword at all except the unreserved ones (column_name keywords too).
    con = duckdb.connect()
    not_unreserved = {r[0] for r in con.execute(
        "SELECT keyword_name FROM duckdb_keywords() WHERE keyword_category <> 'unreserved'").fetchall()}
    assert spec.DUCKDB_RESERVED_KEYWORDS == frozenset(not_unreserved)
    for name in ("values", "integer", "time", "row", "varchar"):
        assert name in spec.RESERVED_SOURCE_NAMES, name
    # Unreserved keywords are the design's default source names and stay usable.
    for name in ("sample", "csv", "keboola", "jira", "postgres"):
        assert name not in spec.RESERVED_SOURCE_NAMES, name
    # Every `reserved` keyword really is refused as an unquoted catalog name.
    reserved = [r[0] for r in con.execute(
        "SELECT keyword_name FROM duckdb_keywords() WHERE keyword_category = 'reserved' ORDER BY 1").fetchall()]
    for kw in reserved[:20]:
        try:
            con.execute(f"ATTACH ':memory:' AS {kw}")
        except duckdb.Error:
            continue
        try:
            con.execute(f"SELECT * FROM {kw}.information_schema.tables")
        except duckdb.Error:
            continue
        raise AssertionError(f"{kw} works unquoted as a catalog name")


def test_package_never_imports_agnes() -> None:
    root = Path(spec.__file__).parent
    for py in root.rglob("*.py"):
        tree = ast.parse(py.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            allowed = {"duckdb", "pyarrow", "contract_tests"}
            for name in names:
                top = name.split(".")[0]
                assert top != "agnes", f"{py} imports {name}"
                assert top in allowed or top in _stdlib(), f"{py} imports {name} (not stdlib/duckdb/pyarrow)"


def _stdlib() -> frozenset[str]:
    import sys

    return frozenset(sys.stdlib_module_names)
