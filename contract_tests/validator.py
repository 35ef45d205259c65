"""validate_extract: check one extract folder against the frozen contract.

Reports every violation it can find (not just the first), each with a
concrete fix, so a connector author fixes everything in one round. The
author's files are only read: extract.duckdb is opened READ_ONLY in place and
parquet is read with pyarrow. No symbolic link is ever followed: links and
special files anywhere in the folder are violations of their own.

`deep=True` (the default, and what the sync runs before publishing) reads
every data page of every parquet file and every column of every base table,
so damaged data is refused before it is served; `deep=False` checks only
the structure (footers, catalog, row counts) for a quick look.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb

from .checks import data as data_checks
from .checks import meta as meta_checks
from .checks import remote as remote_checks
from .checks.catalog import Catalog
from .checks.files import BadFiles, check_files
from .checks.opening import EXTRACT_FILE, check_wal, locate, open_readonly
from .report import Report, TableInfo
from .spec import CONTRACT_TABLES, PINNED_DUCKDB


def validate_extract(
    path: Path | str,
    *,
    source_name: str | None = None,
    now: datetime | None = None,
    deep: bool = True,
) -> Report:
    """Validate the extract at `path` (its folder, or its extract.duckdb).

    `source_name` is checked too when given; `now` (naive = UTC) is the clock
    `extracted_at` is compared with, defaulting to the current UTC time;
    `deep` reads all the data (see the module docstring).
    """
    path = Path(path)
    report = Report(path=str(path), source_name=source_name, duckdb_version=duckdb.__version__)
    if source_name is not None:
        meta_checks.check_source_name(report, source_name)
    extract_dir, db_file = locate(path)
    bad_files = check_files(extract_dir, db_file, report)
    if bad_files.db_file:
        return report  # never open a database through a link
    if not db_file.exists():
        where = f"{extract_dir} does not exist" if not extract_dir.exists() else f"{db_file} does not exist"
        report.add(
            "extract_missing",
            None,
            f"no {EXTRACT_FILE}: {where}",
            f"write {EXTRACT_FILE} (DuckDB {PINNED_DUCKDB}) with a _meta table into the extract folder, next to data/",
        )
        return report
    check_wal(db_file, report)
    con = open_readonly(db_file, report)
    if con is None:
        return report
    try:
        _check_contents(con, extract_dir, report, now or meta_checks.utc_now(), bad_files, deep)
    except duckdb.Error as exc:  # a damaged catalog or block: say so instead of crashing
        report.add(
            "extract_unreadable",
            None,
            f"reading extract.duckdb failed: {str(exc).splitlines()[0]}",
            f"rewrite the extract with duckdb=={PINNED_DUCKDB} and close the connection before handing it over",
        )
    finally:
        con.close()
    return report


def _check_contents(
    con: duckdb.DuckDBPyConnection,
    extract_dir: Path,
    report: Report,
    now: datetime,
    bad_files: BadFiles,
    deep: bool,
) -> None:
    catalog = Catalog.load(con)
    rows = meta_checks.read_meta(con, catalog, report)
    if rows is None:
        return
    meta_checks.check_rows(rows, report, now)
    has_remote = any(r.query_mode == "remote" for r in rows)
    aliases = remote_checks.read_attach(con, catalog, report, has_remote)
    seen: set[str] = set()
    for row in rows:
        if row.table_name is None or row.table_name in seen:
            continue
        seen.add(row.table_name)
        if row.table_name.lower() in CONTRACT_TABLES:
            continue  # table_name_invalid says so; the contract's own tables are never data
        if row.query_mode == "remote":
            info = remote_checks.check_remote_row(con, catalog, row, aliases, report)
        else:
            info = data_checks.check_local(con, catalog, extract_dir, row, report, bad_files, deep)
        _describe(info, row)
        report.tables.append(info)
    data_checks.check_orphans(catalog, extract_dir, seen, report, bad_files)
    remote_checks.check_orphan_views(con, catalog, seen, aliases, report)


def _describe(info: TableInfo, row: meta_checks.MetaRow) -> None:
    if row.extracted_at is not None:
        info.extracted_at = row.extracted_at.isoformat()
