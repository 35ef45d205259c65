"""CSV connector: every `*.csv` in `files_dir` becomes one table.

DuckDB's `read_csv` detects column types (integers, decimals, dates,
timestamps, booleans, text) and writes parquet through ExtractWriter. A bad
file fails only its own table (event `table_failed` with file and reason);
the process exits non-zero only when every table failed, and the job decides
whether the run is partial.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import duckdb
from csv_checks import CsvProblem, diagnose, precheck

from agnes.extract import ExtractWriter, emit, log, normalize_table_name, read_context
from agnes.extract.writer import sql_literal


def _read_sql(path: Path, delimiter: str, full_sample: bool) -> str:
    # Pin everything but the column types: left to guess, DuckDB's sniffer may skip leading rows
    # or treat '#' lines as comments - silent data loss.
    options = (f"header = true, delim = {sql_literal(delimiter)}, quote = '\"', escape = '\"', skip = 0, "
               "comment = '', strict_mode = true, null_padding = false")
    if full_sample:  # a value late in the file broke the type guessed from the first rows
        options += ", sample_size = -1"
    return f"SELECT * FROM read_csv({sql_literal(path)}, {options})"


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def uploaded_name(files_dir: Path, table: str) -> str | None:
    """The name the file of `table` was uploaded under (Agnes keeps it in `.<table>.name`), if any."""
    try:
        return (files_dir / f".{table}.name").read_text("utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def add_csv(w: ExtractWriter, table: str, path: Path, shown: str | None = None) -> None:
    """Write one CSV file as `table`; raise CsvProblem with a precise message on a bad file.

    `shown`: the file's original name for the description (default: its name in the folder).
    """
    dialect = precheck(path)
    extracted_at = datetime.fromtimestamp(path.stat().st_mtime, UTC)  # the upload is when the data was taken
    description = f"CSV file {shown or path.name}"
    con = duckdb.connect()
    try:
        try:
            info = w.add_relation(table, _read_sql(path, dialect.delimiter, False), con=con,
                                  description=description, extracted_at=extracted_at)
        except duckdb.Error as first:
            problem = diagnose(path, dialect)
            if problem:
                raise CsvProblem(problem) from None
            try:
                info = w.add_relation(table, _read_sql(path, dialect.delimiter, True), con=con,
                                      description=description, extracted_at=extracted_at)
            except duckdb.Error:
                raise CsvProblem(f"{path.name}: DuckDB could not read it: {_first_line(first)}") from None
    finally:
        con.close()
    emit("table_done", table=table, file=path.name, rows=info.rows, bytes=info.size_bytes)


def plan(files_dir: Path, wanted: list[str]) -> tuple[dict[str, Path], list[dict[str, str]]]:
    """Map table name -> file; report names that collide or cannot be derived."""
    by_name: dict[str, list[Path]] = {}
    failed: list[dict[str, str]] = []
    files = sorted(p for p in files_dir.iterdir() if p.is_file() and p.suffix.lower() == ".csv"
                   and not p.name.startswith("."))
    for path in files:
        try:
            by_name.setdefault(normalize_table_name(path.stem), []).append(path)
        except ValueError as e:
            failed.append({"table": path.stem, "file": path.name, "error": str(e)})
    tables: dict[str, Path] = {}
    for table, paths in by_name.items():
        if wanted and table not in wanted:
            continue
        if len(paths) > 1:
            names = ", ".join(p.name for p in paths)
            for p in paths:
                failed.append({"table": table, "file": p.name,
                               "error": f"files {names} would all become table {table!r}; rename all but one"})
        else:
            tables[table] = paths[0]
    for table in wanted:
        if table not in by_name:
            failed.append({"table": table, "file": "",
                           "error": f"no CSV file in {files_dir} becomes table {table!r}"})
    return tables, failed


def main() -> int:
    ctx = read_context()
    files_dir = ctx.config.get("files_dir")
    if not files_dir or not Path(files_dir).is_dir():
        log(f"csv connector: option files_dir={files_dir!r} is not a folder; set files_dir to the folder "
            "holding the source's .csv files (uploads go there via POST /api/admin/uploads?source=NAME)")
        return 2
    tables, failed = plan(Path(files_dir), ctx.tables)
    if not tables and not failed:
        log(f"csv connector: no *.csv files in {files_dir}; upload one with POST /api/admin/uploads?source=NAME")
        return 2
    for f in failed:
        emit("table_failed", **f)
    done = 0
    with ExtractWriter(ctx.output_dir) as w:
        for table, path in tables.items():
            emit("table_started", table=table, file=path.name)
            try:
                add_csv(w, table, path, uploaded_name(Path(files_dir), table))
                done += 1
            except (CsvProblem, duckdb.Error, OSError) as e:
                error = str(e) if isinstance(e, CsvProblem) else f"{path.name}: {_first_line(e)}"
                emit("table_failed", table=table, file=path.name, error=error)
                log(f"table {table}: {error}")
    return 0 if done else 1


if __name__ == "__main__":
    sys.exit(main())
