"""What is inside extract.duckdb, read from DuckDB's catalog functions only.

Listing tables, views and columns never executes a view, so an extract's
own (possibly hostile or broken) views cannot run during the check. Names are
keyed case-insensitively because DuckDB resolves identifiers that way.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import duckdb

from ..report import Report


def q(name: str) -> str:
    """Quote an identifier for SQL text."""
    return '"' + name.replace('"', '""') + '"'


def sql_str(value: str) -> str:
    """Quote a string literal for SQL text shown in a fix."""
    return "'" + value.replace("'", "''") + "'"


@dataclass
class Catalog:
    """Base tables and views of the extract's main schema (key: lowercase name)."""

    tables: dict[str, str] = field(default_factory=dict)
    views: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (name, sql)

    @classmethod
    def load(cls, con: duckdb.DuckDBPyConnection) -> Catalog:
        cat = cls()
        where = "database_name = current_database() AND schema_name = 'main' AND NOT internal AND NOT temporary"
        for (name,) in con.execute(f"SELECT table_name FROM duckdb_tables() WHERE {where}").fetchall():
            cat.tables[name.lower()] = name
        for name, sql in con.execute(f"SELECT view_name, sql FROM duckdb_views() WHERE {where}").fetchall():
            cat.views[name.lower()] = (name, sql or "")
        return cat

    def table(self, name: str) -> str | None:
        return self.tables.get(name.lower())

    def view(self, name: str) -> tuple[str, str] | None:
        return self.views.get(name.lower())


def table_columns(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    """Ordered actual column name -> DuckDB type of a main-schema table."""
    rows = con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND table_name = ? ORDER BY column_index",
        [table],
    ).fetchall()
    return {n: t for n, t in rows}


def _type_fix(table: str, col: str, actual: str, expected: str) -> str:
    if col == "extracted_at" and "TIME ZONE" in actual.upper():
        return (
            f"ALTER TABLE {table} ALTER extracted_at TYPE TIMESTAMP USING (extracted_at AT TIME ZONE 'UTC') "
            "— a naive TIMESTAMP meaning UTC"
        )
    return f"ALTER TABLE {table} ALTER {col} TYPE {expected} (or CAST({col} AS {expected}) when creating it)"


def check_columns(
    con: duckdb.DuckDBPyConnection,
    report: Report,
    table: str,
    expected: dict[str, str],
    code_prefix: str,
    spec_file: str,
) -> tuple[dict[str, str], set[str]]:
    """Compare a contract table's columns with the frozen spec.

    Returns (expected name -> actual column to read, names whose type is
    exact). A misnamed column is still read, so one typo does not turn into
    a flood of follow-up violations.
    """
    actual = table_columns(con, table)
    missing = [c for c in expected if c not in actual]
    extra = [c for c in actual if c not in expected]
    source: dict[str, str] = {c: c for c in expected if c in actual}

    # Pair a missing with an extra column: same name in another case, a
    # close spelling, or the same position with the same type.
    positions = list(actual)
    for col in list(missing):
        match = next((e for e in extra if e.lower() == col.lower()), None)
        if match is None:
            close = difflib.get_close_matches(col, extra, n=1, cutoff=0.6)
            match = close[0] if close else None
        if match is None:
            idx = list(expected).index(col)
            if idx < len(positions) and positions[idx] in extra and actual[positions[idx]] == expected[col]:
                match = positions[idx]
        if match is None:
            continue
        missing.remove(col)
        extra.remove(match)
        source[col] = match
        report.add(
            f"{code_prefix}_column_misnamed",
            table,
            f"{table} has a column {q(match)} where the contract expects {col}",
            f"ALTER TABLE {table} RENAME COLUMN {q(match)} TO {col}",
        )

    for col in missing:
        report.add(
            f"{code_prefix}_column_missing",
            table,
            f"{table}.{col} ({expected[col]}) is missing",
            f"ALTER TABLE {table} ADD COLUMN {col} {expected[col]} — or create {table} with the exact "
            f"statement in contract_tests/spec/{spec_file}",
        )
    for col in extra:
        report.add(
            f"{code_prefix}_column_extra",
            table,
            f"{table} has an extra column {q(col)} ({actual[col]}); the contract is frozen and allows no other columns",
            f"ALTER TABLE {table} DROP COLUMN {q(col)} — keep extra metadata in a table of your own",
        )

    exact: set[str] = set()
    for col, src in source.items():
        if actual[src] == expected[col]:
            exact.add(col)
            continue
        report.add(
            f"{code_prefix}_column_type",
            table,
            f"{table}.{col} is {actual[src]}, expected {expected[col]}",
            _type_fix(table, q(src) if src != col else col, actual[src], expected[col]),
        )
    return source, exact
