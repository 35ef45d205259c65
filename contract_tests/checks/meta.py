"""Checks on `_meta`: its shape, then each row's name, mode, rows and time."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import duckdb

from ..names import source_name_problem, suggest_name, table_name_problem
from ..report import Report
from ..spec import FUTURE_SKEW_SECONDS, META_COLUMNS, META_CONSTRAINTS, META_TABLE, QUERY_MODES, TABLE_NAME_MAX
from .catalog import Catalog, check_columns, q, sql_str


@dataclass
class MetaRow:
    """One `_meta` row; `trusted` holds columns whose declared type was exact."""

    index: int
    table_name: str | None
    rows: int | None
    extracted_at: datetime | None
    query_mode: str | None
    trusted: frozenset[str]

    @property
    def label(self) -> str:
        return self.table_name if self.table_name is not None else f"_meta row {self.index}"

    def where(self) -> str:
        if self.table_name is None:
            return "table_name IS NULL"
        return f"table_name = {sql_str(self.table_name)}"


def check_source_name(report: Report, name: str) -> None:
    """Source names become DuckDB catalog names, so they obey the identifier rules."""
    problem = source_name_problem(name)
    if problem is not None:
        report.add(problem.code, None, problem.message, problem.fix)


def normalise_name(name: str, limit: int = TABLE_NAME_MAX, prefix: str = "t_") -> str:
    """The name a connector should use instead: lowercase, [a-z0-9_] only, no leading digit."""
    return suggest_name(name, limit, prefix)


def read_meta(con: duckdb.DuckDBPyConnection, catalog: Catalog, report: Report) -> list[MetaRow] | None:
    """Check `_meta` exists as a base table with the frozen columns; read its rows."""
    name = catalog.table(META_TABLE)
    if name is None:
        what = "is a view; the contract needs a base table" if catalog.view(META_TABLE) else "is missing"
        report.add(
            "meta_not_a_table" if catalog.view(META_TABLE) else "meta_missing",
            META_TABLE,
            f"extract.duckdb has no _meta table: _meta {what}",
            "create it with the exact statement in contract_tests/spec/meta.sql and insert one row per table",
        )
        return None
    source, exact = check_columns(con, report, name, META_COLUMNS, "meta", "meta.sql", META_CONSTRAINTS)
    select = ", ".join(
        # Via VARCHAR: every type casts to text, so no mistyped column can make the read fail.
        f"TRY_CAST(CAST({q(source[c])} AS VARCHAR) AS {t})" if c in source else f"NULL::{t}"
        for c, t in META_COLUMNS.items()
    )
    rows = con.execute(f"SELECT {select} FROM {q(name)}").fetchall()  # noqa: S608 — names are quoted
    cols = list(META_COLUMNS)
    out = []
    for i, row in enumerate(rows, 1):
        rec = dict(zip(cols, row, strict=True))
        out.append(
            MetaRow(
                index=i,
                table_name=rec["table_name"],
                rows=rec["rows"],
                extracted_at=rec["extracted_at"],
                query_mode=rec["query_mode"],
                trusted=frozenset(exact),
            )
        )
    return out


def check_rows(rows: list[MetaRow], report: Report, now: datetime) -> None:
    """Per-row rules: names, duplicates, query_mode, extracted_at, rows present."""
    counts = Counter(r.table_name for r in rows if r.table_name is not None)
    for name, n in counts.items():
        if n > 1:
            report.add(
                "table_name_duplicate",
                name,
                f"_meta has {n} rows for table {name!r}",
                f"keep one row: DELETE the extra rows for {sql_str(name)} so each table appears once",
            )
    limit = _naive_utc(now) + timedelta(seconds=FUTURE_SKEW_SECONDS)
    for r in rows:
        if r.table_name is None:
            report.add(
                "table_name_missing",
                None,
                f"_meta row {r.index} has table_name NULL",
                "set table_name to the table's name, or DELETE the row (table_name is NOT NULL)",
            )
        elif (problem := table_name_problem(r.table_name)) is not None:
            report.add(problem.code, r.table_name, problem.message, problem.fix)
        if r.query_mode not in QUERY_MODES and "query_mode" in r.trusted:
            shown = "NULL" if r.query_mode is None else repr(r.query_mode)
            report.add(
                "query_mode_invalid",
                r.label,
                f"_meta.query_mode is {shown}; it must be 'local' or 'remote'",
                f"UPDATE _meta SET query_mode = 'local' WHERE {r.where()} (or 'remote' for a pass-through view)",
            )
        if "extracted_at" in r.trusted:
            _check_extracted_at(r, report, now, limit)
        if r.rows is None and r.query_mode != "remote" and "rows" in r.trusted:
            report.add(
                "rows_missing",
                r.label,
                "_meta.rows is NULL for a local table",
                f"UPDATE _meta SET rows = (the table's row count) WHERE {r.where()}",
            )


def _check_extracted_at(r: MetaRow, report: Report, now: datetime, limit: datetime) -> None:
    if r.extracted_at is None:
        report.add(
            "extracted_at_missing",
            r.label,
            "_meta.extracted_at is NULL; freshness is measured by it",
            f"UPDATE _meta SET extracted_at = CAST(now() AT TIME ZONE 'UTC' AS TIMESTAMP) WHERE {r.where()} "
            "— better: record when the data was pulled, as naive UTC",
        )
    elif r.extracted_at > limit:
        report.add(
            "extracted_at_future",
            r.label,
            f"_meta.extracted_at is {r.extracted_at.isoformat(sep=' ')}, later than now "
            f"({_naive_utc(now).isoformat(sep=' ', timespec='seconds')} UTC) by more than "
            f"{FUTURE_SKEW_SECONDS // 60} minutes",
            "store it as naive UTC: datetime.now(timezone.utc).replace(tzinfo=None) in Python, or "
            "CAST(now() AT TIME ZONE 'UTC' AS TIMESTAMP) in SQL — not local time",
        )


def _naive_utc(ts: datetime) -> datetime:
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC).replace(tzinfo=None)
    return ts


def utc_now() -> datetime:
    return datetime.now(UTC)
