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


def column_constraints(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, tuple[bool, str | None]]:
    """Actual column name -> (NOT NULL?, DEFAULT as DuckDB prints it) of a main-schema table."""
    rows = con.execute(
        "SELECT column_name, NOT is_nullable, column_default FROM duckdb_columns() WHERE database_name = "
        "current_database() AND schema_name = 'main' AND table_name = ? ORDER BY column_index",
        [table],
    ).fetchall()
    return {n: (bool(nn), d) for n, nn, d in rows}


def check_columns(
    con: duckdb.DuckDBPyConnection,
    report: Report,
    table: str,
    expected: dict[str, str],
    code_prefix: str,
    spec_file: str,
    constraints: dict[str, tuple[bool, str | None]] | None = None,
) -> tuple[dict[str, str], set[str]]:
    """Compare a contract table's columns with the frozen spec.

    Names, types, order, NOT NULL and DEFAULT are compared with the spec DDL
    (`constraints` holds what the spec declares, parsed by DuckDB itself).

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

    if not missing and not extra:
        _check_order_and_constraints(con, report, table, expected, source, code_prefix, spec_file, constraints)

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


def _check_order_and_constraints(
    con: duckdb.DuckDBPyConnection,
    report: Report,
    table: str,
    expected: dict[str, str],
    source: dict[str, str],
    code_prefix: str,
    spec_file: str,
    constraints: dict[str, tuple[bool, str | None]] | None,
) -> None:
    """Column order (INSERT ... VALUES relies on it), NOT NULL and DEFAULT as the spec declares them."""
    back = {src: col for col, src in source.items()}
    order = [back[c] for c in table_columns(con, table)]
    if order != list(expected):
        cols = ", ".join(q(source[c]) for c in expected)
        report.add(
            f"{code_prefix}_column_order",
            table,
            f"{table} has its columns in the order ({', '.join(order)}); the contract's order is "
            f"({', '.join(expected)}) and INSERT ... VALUES relies on it",
            f"recreate it: CREATE TABLE {table}_new with the exact statement in contract_tests/spec/{spec_file} "
            f"(named {table}_new), INSERT INTO {table}_new SELECT {cols} FROM {table}; DROP TABLE {table}; "
            f"ALTER TABLE {table}_new RENAME TO {table}",
        )
    if not constraints:
        return
    actual = column_constraints(con, table)
    for col, (not_null, default) in constraints.items():
        src = source.get(col)
        if src is None or src not in actual:
            continue
        has_not_null, has_default = actual[src]
        if not_null and not has_not_null:
            report.add(
                f"{code_prefix}_column_not_null",
                table,
                f"{table}.{col} allows NULL; the contract declares it NOT NULL",
                f"ALTER TABLE {table} ALTER {q(src)} SET NOT NULL (delete or fix rows where it is NULL first) — "
                f"or create {table} with the exact statement in contract_tests/spec/{spec_file}",
            )
        if default is not None and has_default != default:
            shown = "no default" if has_default is None else f"DEFAULT {has_default}"
            report.add(
                f"{code_prefix}_column_default",
                table,
                f"{table}.{col} has {shown}; the contract declares DEFAULT {default}",
                f"ALTER TABLE {table} ALTER {q(src)} SET DEFAULT {default}",
            )
