"""Downloaded Keboola CSV files -> one typed parquet file (optionally merged into the previous one).

Keboola values are text; empty means NULL for every non-string type. A value
that does not parse under its declared type - or that the type would change
(INTEGER `1.5`, NUMERIC(12,2) `12.555`, TIMESTAMP `...+0200`, DATE with a time
of day) - is never silently nulled or rounded: the column is kept as VARCHAR
(no value lost) and reported with the count and an example, so the admin can
fix the column's type in Keboola. The session zone is UTC: a TIMESTAMP_TZ
value without an offset is UTC, whatever the host's zone.

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
         previous: Path | None = None, memory_limit: str | None = None) -> Loaded:
    """Write `out` (parquet) from the CSV `files`; with `previous`, merge by `primary_key` (new rows win).

    `memory_limit`: this load's DuckDB share (several tables load at once; DuckDB's default
    is 80 % of RAM *each*); past it DuckDB spills to `work/tmp`."""
    columns = [c for c, _ in types]
    if header and files:
        found = _header(files[0])
        if found != columns:
            raise KeboolaError("bad_response", f"table {table_id}: the export's header {found} does not match the "
                               f"table's columns {columns}")
    con = duckdb.connect()  # in memory, spilling to `work/tmp` past the memory limit
    try:
        con.execute(f"SET temp_directory = {_lit(work / 'tmp')}")
        if memory_limit:
            con.execute(f"SET memory_limit = {_lit(memory_limit)}")
        con.execute("SET TimeZone = 'UTC'")  # a TIMESTAMP_TZ value without an offset is UTC, whatever the host
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


def _changed(col: str, typ: str) -> str:
    """SQL: true when the text in `col` does not parse as `typ`, or parses into a different value.

    TRY_CAST alone is not enough: it rounds `1.5` into BIGINT 2, `12.555` into
    DECIMAL(12,2) 12.56, drops a TIMESTAMP's `+0200` and a DATE's time of day.
    The session zone is UTC (see `load`), so "without offset" means UTC.
    """
    c = _q(col)
    cast = f"TRY_CAST({c} AS {typ})"
    failed = f"{cast} IS NULL"
    if typ == "BIGINT":  # digits only: no fraction, exponent or `1_000`
        return f"({failed} OR NOT regexp_full_match({c}, '\\s*[+-]?\\d+\\s*'))"
    if typ.startswith("DECIMAL("):
        scale = int(typ[len("DECIMAL("):-1].split(",")[1])
        plain = "regexp_full_match(" + c + ", '\\s*[+-]?(\\d+\\.?\\d*|\\.\\d+)\\s*')"
        digits = f"length(rtrim(regexp_extract(trim({c}), '\\.(\\d*)$', 1), '0'))"
        return (f"({failed} OR ({plain} AND {digits} > {scale}) OR "
                f"(NOT {plain} AND TRY_CAST({c} AS DOUBLE) IS DISTINCT FROM {cast}::DOUBLE))")
    sub_micro = f"regexp_matches({c}, '\\d:\\d\\d(:\\d\\d)?\\.\\d{{6}}\\d*[1-9]')"
    if typ == "TIMESTAMP":  # an offset other than UTC would be dropped, not applied
        return f"({failed} OR {sub_micro} OR {cast} IS DISTINCT FROM TRY_CAST({c} AS TIMESTAMPTZ)::TIMESTAMP)"
    if typ == "TIMESTAMP WITH TIME ZONE":
        return f"({failed} OR {sub_micro})"
    if typ == "DATE":  # a time of day (or an offset that moves the day) would be dropped
        return f"({failed} OR TRY_CAST({c} AS TIMESTAMPTZ) IS DISTINCT FROM {cast}::TIMESTAMPTZ)"
    return failed


def _check_types(con: duckdb.DuckDBPyConnection, types: list[tuple[str, str]]) -> tuple[
        list[tuple[str, str]], list[TypeProblem]]:
    """Count values the declared type would not keep exactly (one scan); such columns stay VARCHAR."""
    typed = [(c, t) for c, t in types if t != "VARCHAR"]
    if not typed:
        return list(types), []
    parts = []
    for c, t in typed:
        bad = f"{_q(c)} IS NOT NULL AND {_q(c)} <> '' AND {_changed(c, t)}"
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
