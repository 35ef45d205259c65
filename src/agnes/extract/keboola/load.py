"""Downloaded Keboola CSV files -> one typed parquet file (optionally merged into the previous one).

Keboola values are text; empty means NULL for every non-string type. A value
that does not parse under its declared type is never silently nulled: the
column is kept as VARCHAR (no value lost) and reported with the count and an
example, so the admin can fix the column's type in Keboola.

The incremental cursor travels inside the parquet file's key-value metadata
(`agnes.keboola.cursor`): it is published, carried over and rolled back with
the data it describes, so it can never run ahead of what is served.
"""

from __future__ import annotations

import csv
import gzip
import io
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from agnes.extract.keboola.api import KeboolaError

CURSOR_KEY = "agnes.keboola.cursor"
TABLE_KEY = "agnes.keboola.table_id"
FULL_KEY = "agnes.keboola.full_loaded_at"  # when the data was last exported in full (kept by incremental merges)


class SchemaChanged(Exception):
    """The previous data has other columns or types than this export: merge impossible, reload fully."""


@dataclass(frozen=True)
class TypeProblem:
    column: str
    declared: str
    bad_values: int
    example: str


@dataclass
class Loaded:
    path: Path
    rows: int
    types: list[tuple[str, str]]  # what the parquet holds
    problems: list[TypeProblem] = field(default_factory=list)
    merged_from_previous: int = 0  # rows kept from the previous data (incremental)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str | Path) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _header(path: Path) -> list[str]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as f:
        line = f.readline()
    return next(csv.reader(io.StringIO(line)), [])


def previous_state(path: Path) -> dict[str, str]:
    """{cursor, table_id, full_loaded_at} stored in a previous parquet file ({} when unreadable)."""
    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, ValueError):
        return {}
    keys = {"cursor": CURSOR_KEY, "table_id": TABLE_KEY, "full_loaded_at": FULL_KEY}
    return {name: meta[key.encode()].decode() for name, key in keys.items() if key.encode() in meta}


def parquet_types(path: Path) -> list[tuple[str, str]]:
    con = duckdb.connect()
    try:
        return [(r[0], r[1]) for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet({_lit(path)})").fetchall()]
    finally:
        con.close()


def load(table_id: str, files: list[Path], *, header: bool, types: list[tuple[str, str]], work: Path, out: Path,
         cursor: str, full_loaded_at: str, primary_key: list[str] | None = None,
         previous: Path | None = None) -> Loaded:
    """Write `out` (parquet) from the CSV `files`; with `previous`, merge by `primary_key` (new rows win)."""
    columns = [c for c, _ in types]
    if header and files:
        found = _header(files[0])
        if found != columns:
            raise KeboolaError("bad_response", f"table {table_id}: the export's header {found} does not match the "
                               f"table's columns {columns}")
    con = duckdb.connect()  # in memory, spilling to `work/tmp` past the memory limit
    try:
        con.execute(f"SET temp_directory = {_lit(work / 'tmp')}")
        con.execute("SET preserve_insertion_order = true")
        spec = "{" + ", ".join(f"{_lit(c)}: 'VARCHAR'" for c in columns) + "}"
        if files:
            listed = "[" + ", ".join(_lit(f) for f in files) + "]"
            con.execute(
                f"CREATE TABLE raw AS SELECT * FROM read_csv({listed}, header = {str(header).lower()}, "
                f"columns = {spec}, delim = ',', quote = '\"', escape = '\"', strict_mode = true, "
                "null_padding = false, comment = '', skip = 0, auto_detect = false)")
        else:
            con.execute("CREATE TABLE raw (" + ", ".join(f"{_q(c)} VARCHAR" for c in columns) + ")")
        final, problems = _check_types(con, types)
        select = ", ".join(
            f"{_q(c)}" if t == "VARCHAR" else f"TRY_CAST(NULLIF({_q(c)}, '') AS {t}) AS {_q(c)}" for c, t in final)
        con.execute(f"CREATE VIEW typed AS SELECT {select} FROM raw")
        merged = 0
        if previous is not None and primary_key:
            before = [(r[0], r[1]) for r in con.execute(
                f"DESCRIBE SELECT * FROM read_parquet({_lit(previous)})").fetchall()]
            if before != final:
                raise SchemaChanged(f"previous columns {before} differ from {final}")
            con.execute(f"CREATE VIEW prev AS SELECT * FROM read_parquet({_lit(previous)})")
            match = " AND ".join(f"n.{_q(k)} IS NOT DISTINCT FROM p.{_q(k)}" for k in primary_key)
            merged = con.execute(f"SELECT count(*) FROM prev p WHERE NOT EXISTS (SELECT 1 FROM typed n "
                                 f"WHERE {match})").fetchone()[0]
            source = (f"SELECT * FROM typed UNION ALL BY NAME SELECT * FROM prev p WHERE NOT EXISTS "
                      f"(SELECT 1 FROM typed n WHERE {match})")
        else:
            source = "SELECT * FROM typed"
        kv = "{" + f"{_lit(CURSOR_KEY)}: {_lit(cursor)}, {_lit(TABLE_KEY)}: {_lit(table_id)}, " \
             f"{_lit(FULL_KEY)}: {_lit(full_loaded_at)}" + "}"
        out.parent.mkdir(parents=True, exist_ok=True)
        con.execute(f"COPY ({source}) TO {_lit(out)} (FORMAT parquet, COMPRESSION zstd, KV_METADATA {kv})")
        rows = pq.ParquetFile(out).metadata.num_rows
    except duckdb.Error as e:
        raise KeboolaError("bad_response", f"table {table_id}: the exported CSV could not be read: "
                           f"{str(e).strip().splitlines()[0]}") from None
    finally:
        con.close()
    return Loaded(out, rows, final, problems, merged)


def _check_types(con: duckdb.DuckDBPyConnection, types: list[tuple[str, str]]) -> tuple[
        list[tuple[str, str]], list[TypeProblem]]:
    """Count values that do not parse under each declared type (one scan); such columns stay VARCHAR."""
    typed = [(c, t) for c, t in types if t != "VARCHAR"]
    if not typed:
        return list(types), []
    parts = []
    for c, t in typed:
        bad = f"{_q(c)} IS NOT NULL AND {_q(c)} <> '' AND TRY_CAST({_q(c)} AS {t}) IS NULL"
        parts.append(f"count(*) FILTER (WHERE {bad}), min({_q(c)}) FILTER (WHERE {bad})")
    row = con.execute(f"SELECT {', '.join(parts)} FROM raw").fetchone()
    problems = []
    bad_columns = set()
    for i, (c, t) in enumerate(typed):
        count, example = row[2 * i], row[2 * i + 1]
        if count:
            problems.append(TypeProblem(c, t, int(count), str(example)[:100]))
            bad_columns.add(c)
    return [(c, "VARCHAR" if c in bad_columns else t) for c, t in types], problems
