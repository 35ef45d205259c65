"""Helpers for the contract suite: break one thing at a time, expect one violation."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
from contract_tests import Report, Violation, validate_extract

#: A fixed clock so "future" is deterministic; fixtures write one hour before it.
NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
BEFORE_NOW = datetime(2026, 12, 1, 11, 0, 0)


def run_sql(extract_dir: Path, *statements: str) -> None:
    """Change the extract the way a (buggy) connector would, then close it cleanly."""
    con = duckdb.connect(str(extract_dir / "extract.duckdb"))
    try:
        for sql in statements:
            con.execute(sql)
    finally:
        con.close()


def check(path: Path, **kwargs) -> Report:
    kwargs.setdefault("now", NOW)
    return validate_extract(path, **kwargs)


def codes(report: Report) -> list[str]:
    return [v.code for v in report.violations]


def only(report: Report, code: str) -> Violation:
    """Assert the report has exactly one violation, of `code`, and return it."""
    assert codes(report) == [code], report.to_text()
    violation = report.violations[0]
    assert violation.message and violation.fix
    assert not report.ok
    return violation
