"""Facts about DuckDB 1.5.5 lock-down that the engine's design rests on (re-checked on every upgrade)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agnes.engine.connection import (
    ConnectionPolicy,
    ExtensionUnavailable,
    load_extension,
    lock_down,
    open_connection,
    quote_ident,
    sql_literal,
)


def _duckdb_file(path: Path, value: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    con.execute(f"CREATE TABLE t AS SELECT {value} AS v")
    con.close()
    return path


@pytest.fixture
def policy(tmp_path: Path) -> ConnectionPolicy:
    return ConnectionPolicy(threads=1, memory_limit="256MB", extension_directory=tmp_path / "ext")


def test_extensions_install_from_the_offline_wheels(policy: ConnectionPolicy) -> None:
    con = open_connection(policy)
    load_extension(con, "sqlite")
    load_extension(con, "postgres")
    load_extension(con, "sqlite")  # idempotent
    installed = {p.name for p in policy.extension_directory.rglob("*.duckdb_extension")}
    assert installed == {"sqlite_scanner.duckdb_extension", "postgres_scanner.duckdb_extension"}
    with pytest.raises(ExtensionUnavailable, match="never downloads"):
        load_extension(con, "no_such_thing")


def test_after_lock_new_runs_attach_but_nothing_else_opens(tmp_path: Path, policy: ConnectionPolicy) -> None:
    extracts = tmp_path / "extracts"
    early = _duckdb_file(extracts / "a" / "extract.duckdb", 1)
    outside = _duckdb_file(tmp_path / "elsewhere" / "x.duckdb", 2)
    con = open_connection(policy)
    load_extension(con, "postgres")
    con.execute(f"ATTACH {sql_literal(str(early))} AS a (READ_ONLY)")
    lock_down(con, [extracts])

    late = _duckdb_file(extracts / "b" / "extract.duckdb", 3)
    con.execute(f"ATTACH {sql_literal(str(late))} AS b (READ_ONLY)")  # a run published after the lock
    pq.write_table(pa.table({"v": [4]}), extracts / "b" / "t.parquet")
    assert con.execute(f"SELECT v FROM read_parquet('{extracts}/b/t.parquet')").fetchone() == (4,)
    assert con.execute("SELECT (SELECT v FROM a.t) + (SELECT v FROM b.t)").fetchone() == (4,)
    con.execute("DETACH a")

    with pytest.raises(duckdb.PermissionException):
        con.execute(f"ATTACH {sql_literal(str(outside))} AS o (READ_ONLY)")
    with pytest.raises(duckdb.PermissionException, match="Loading external extensions is disabled"):
        con.execute("LOAD sqlite")
    with pytest.raises(duckdb.PermissionException, match="Attaching Postgres databases is disabled"):
        con.execute("ATTACH 'host=127.0.0.1 dbname=test user=postgres' AS pg (TYPE postgres, READ_ONLY)")
    with pytest.raises(duckdb.Error, match="locked"):
        con.execute("SET enable_external_access = true")
    with pytest.raises(duckdb.Error, match="locked"):
        con.execute(f"SET allowed_directories = [{sql_literal(str(tmp_path))}]")


def test_known_hole_sqlite_extension_ignores_the_lock(tmp_path: Path, policy: ConnectionPolicy) -> None:
    """Why sqlite is loaded only when a source needs it, and why user SQL must be refused table
    functions and ATTACH by the query guard: sqlite reads any file even after the lock."""
    db = sqlite3.connect(tmp_path / "private.db")
    db.execute("CREATE TABLE secrets (s TEXT)")
    db.execute("INSERT INTO secrets VALUES ('top')")
    db.commit()
    db.close()
    con = open_connection(policy)
    load_extension(con, "sqlite")
    lock_down(con, [tmp_path / "extracts"])
    rows = con.execute(f"SELECT * FROM sqlite_scan({sql_literal(str(tmp_path / 'private.db'))}, 'secrets')")
    assert rows.fetchall() == [("top",)]


def test_quoting() -> None:
    assert quote_ident('we"ird') == '"we""ird"'
    assert sql_literal("it's") == "'it''s'"


def test_python_variables_are_never_tables(policy: ConnectionPolicy) -> None:
    """DuckDB's Python client resolves an unknown table name from the caller's local variables
    (replacement scans); a serving connection must not."""
    con = open_connection(policy)
    secret_rows = pa.table({"s": ["top"]})  # noqa: F841 -- the variable the query must not see
    with pytest.raises(duckdb.CatalogException, match="secret_rows"):
        con.sql("SELECT * FROM secret_rows").fetchall()
    with pytest.raises(duckdb.CatalogException):
        con.cursor().sql("SELECT * FROM secret_rows").fetchall()
