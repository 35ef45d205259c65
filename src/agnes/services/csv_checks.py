"""CSV file checks for uploads and discovery, with the csv connector's exact messages.

The csv connector keeps its checks in `connectors/csv/csv_checks.py`, a plain
file beside its extractor (not an importable module). The server loads that
same file by path instead of keeping a copy, so an upload is refused with the
very sentence (file, line, problem, fix) a sync would report. DuckDB then
reads the file with the connector's pinned dialect to get types and, for
uploads, to prove every row parses.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType

import duckdb

from agnes.settings import BUILTIN_CONNECTORS_DIR

CHECKS_FILE = BUILTIN_CONNECTORS_DIR / "csv" / "csv_checks.py"
_MODULE = "agnes_connector_csv_checks"


@lru_cache(maxsize=1)
def _checks() -> ModuleType:
    spec = importlib.util.spec_from_file_location(_MODULE, CHECKS_FILE)
    if spec is None or spec.loader is None:  # pragma: no cover - the file ships with Agnes
        raise RuntimeError(f"cannot load {CHECKS_FILE}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[_MODULE] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


class CsvProblem(ValueError):
    """A bad CSV file; str() names the file, the line and the fix."""


@dataclass(frozen=True)
class CsvInfo:
    columns: list[tuple[str, str]]  # (name, DuckDB type)
    rows: int | None  # exact when read in full, else None
    delimiter: str


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _read_sql(path: Path, delimiter: str, full_sample: bool) -> str:
    # The connector's dialect (connectors/csv/extractor.py): pinned, so DuckDB never skips rows
    # or reads '#' lines as comments; only the column types are left to its sniffer.
    options = (f"header = true, delim = {_sql_literal(delimiter)}, quote = '\"', escape = '\"', skip = 0, "
               "comment = '', strict_mode = true, null_padding = false")
    if full_sample:
        options += ", sample_size = -1"
    return f"SELECT * FROM read_csv({_sql_literal(str(path))}, {options})"


def _attempt(con: duckdb.DuckDBPyConnection, sql: str, full: bool) -> tuple[list[tuple[str, str]], int | None]:
    columns = [(r[0], r[1]) for r in con.execute(f"DESCRIBE {sql}").fetchall()]
    if not full:
        return columns, None
    # count(COLUMNS(*)) makes DuckDB convert every value; count(*) alone would skip that.
    row = con.execute(f"SELECT count(*), count(COLUMNS(*)) FROM ({sql})").fetchone()
    return columns, int(row[0]) if row else 0


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def inspect_csv(path: Path, *, display_name: str | None = None, full: bool = False) -> CsvInfo:
    """Check `path` like the csv connector would; raise CsvProblem naming `display_name`.

    `full=True` reads every row (uploads: nothing bad may be staged); otherwise only
    the header and DuckDB's type sample are read (discovery of already staged files).
    """
    checks = _checks()
    shown = display_name or path.name

    def problem(message: str) -> CsvProblem:
        return CsvProblem(shown + message[len(path.name):] if message.startswith(path.name) else message)

    try:
        dialect = checks.precheck(path)
    except checks.CsvProblem as e:
        raise problem(str(e)) from None
    con = duckdb.connect(config={"threads": 2})
    try:
        try:
            columns, rows = _attempt(con, _read_sql(path, dialect.delimiter, False), full)
        except duckdb.Error as first:
            found = checks.diagnose(path, dialect)
            if found:
                raise problem(found) from None
            try:  # a value late in the file broke the type guessed from the first rows
                columns, rows = _attempt(con, _read_sql(path, dialect.delimiter, True), full)
            except duckdb.Error:
                raise CsvProblem(f"{shown}: DuckDB could not read it: {_first_line(first)}") from None
    finally:
        con.close()
    return CsvInfo(columns=columns, rows=rows, delimiter=dialect.delimiter)
