"""Local data: every local `_meta` row has exactly one data form, and back.

Parquet rows are counted from the footer metadata (pyarrow). With `deep`
(the default, and what the sync runs before publishing) every page of every
column is then decoded too (page checksums verified where the writer stored
them), and every column of a base table is hashed: a footer or a row count
can be intact while the data blocks behind it are not. Views are never
executed: the engine reads only parquet or base tables for local tables.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from ..report import DataKind, Report, TableInfo
from ..spec import CONTRACT_TABLES
from .catalog import Catalog, q, sql_str
from .files import BadFiles
from .meta import MetaRow

#: Rows decoded at a time by the deep read (bounded memory, whatever the row group size).
DEEP_BATCH_ROWS = 65_536


def _reason(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _deep_read(f: Path, expected_rows: int) -> str | None:
    """Decode every page of every column; the reason it failed, or None."""
    try:
        pf = pq.ParquetFile(f, page_checksum_verification=True)
    except TypeError:  # pyarrow < 13 has no page checksums; decoding still finds broken pages
        pf = pq.ParquetFile(f)
    try:
        decoded = 0
        for batch in pf.iter_batches(batch_size=DEEP_BATCH_ROWS, use_threads=True):  # columns decode in parallel
            decoded += batch.num_rows
    finally:
        pf.close()
    if decoded != expected_rows:
        return f"the footer says {expected_rows} rows but {decoded} could be decoded"
    return None


def _parquet_rows(files: list[Path], deep: bool) -> tuple[int, list[tuple[Path, str]], set[str]]:
    """Sum footer row counts; return (rows, unreadable files with reason, distinct schemas)."""
    total, bad, schemas = 0, [], set()
    for f in files:
        try:
            meta = pq.read_metadata(f)
            problem = _deep_read(f, meta.num_rows) if deep else None
        except Exception as exc:  # noqa: BLE001 — any reader error means "unreadable"
            bad.append((f, _reason(exc)))
            continue
        if problem:
            bad.append((f, problem))
            continue
        total += meta.num_rows
        schemas.add(meta.schema.to_arrow_schema().remove_metadata().to_string())
    return total, bad, schemas


def _dir_parquet(d: Path) -> list[Path]:
    return sorted(p for p in d.glob("*.parquet") if p.is_file())


def check_local(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    extract_dir: Path,
    row: MetaRow,
    report: Report,
    bad_files: BadFiles | None = None,
    deep: bool = True,
) -> TableInfo:
    """Find the one data form of a local table, count its rows, compare with `_meta.rows`."""
    name = row.table_name or ""
    info = TableInfo(name=name, query_mode=row.query_mode, meta_rows=row.rows)
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        return info  # table_name_invalid already says so; never look outside data/
    if bad_files is not None and (
        name in bad_files.tables or bad_files.blocked(f"data/{name}") or bad_files.blocked(f"data/{name}.parquet")
    ):
        return info  # a link or special file: already reported, and never read through
    data = extract_dir / "data"
    file, folder = data / f"{name}.parquet", data / name
    forms: list[tuple[DataKind, str]] = []
    if file.is_file():
        forms.append(("parquet_file", f"data/{name}.parquet"))
    if folder.is_dir() and _dir_parquet(folder):
        forms.append(("parquet_dir", f"data/{name}/*.parquet"))
    base = catalog.table(name) if name.lower() not in CONTRACT_TABLES else None
    if base is not None:
        forms.append(("base_table", f"base table {base} in extract.duckdb"))

    if not forms:
        report.add("data_missing", name, _missing_message(catalog, data, name), _missing_fix(name))
        return info
    if len(forms) > 1:
        report.add(
            "data_ambiguous",
            name,
            "the table has more than one data form: " + ", ".join(w for _, w in forms),
            "keep exactly one: data/<table>.parquet, data/<table>/*.parquet or a base table",
        )
        return info

    kind, where = forms[0]
    info.data_kind = kind
    if kind == "base_table":
        # count(*) alone never reads a data block; hashing every column reads (and checksums) them all.
        sql = f"SELECT count(*), bit_xor(hash(COLUMNS(*))) FROM main.{q(base)}" if deep else (
            f"SELECT count(*) FROM main.{q(base)}"
        )
        try:
            info.rows = con.execute(sql).fetchone()[0]
        except duckdb.Error as exc:
            report.add(
                "base_table_unreadable",
                name,
                f"reading base table {base} failed: {_reason(exc)}",
                f"recreate the table with duckdb==1.5.5: CREATE OR REPLACE TABLE {q(name)} AS ... "
                "(if extract.duckdb is damaged, write the whole extract again and copy it only after con.close())",
            )
            return info
    else:
        files = [file] if kind == "parquet_file" else _dir_parquet(folder)
        rows, bad, schemas = _parquet_rows(files, deep)
        if bad:
            shown = "; ".join(f"{f.relative_to(extract_dir)}: {why}" for f, why in bad[:5])
            more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
            report.add(
                "parquet_unreadable",
                name,
                f"{len(bad)} parquet file(s) cannot be read: {shown}{more}",
                "rewrite the file(s) completely (pyarrow.parquet.write_table or COPY ... TO ... (FORMAT parquet)) "
                "and hand the extract over only after the writer has closed them",
            )
            return info
        if len(schemas) > 1:
            report.add(
                "parquet_schema_mismatch",
                name,
                f"the {len(files)} files in data/{name}/ do not share one schema ({len(schemas)} variants)",
                "write every part with the same column names and types (cast before writing)",
            )
        info.rows = rows
    if row.rows is not None and "rows" in row.trusted and row.rows != info.rows:
        report.add(
            "rows_mismatch",
            name,
            f"_meta.rows says {row.rows} but {where} has {info.rows} rows",
            f"UPDATE _meta SET rows = {info.rows} WHERE table_name = {sql_str(name)} "
            "(set rows from the data you wrote, after writing it)",
        )
    return info


def _missing_message(catalog: Catalog, data: Path, name: str) -> str:
    msg = f"local table {name!r} has no data: no data/{name}.parquet, no data/{name}/*.parquet, no base table"
    folder = data / name
    if folder.is_dir():
        nested = next(iter(folder.rglob("*.parquet")), None)
        msg += (
            f"; data/{name}/ has parquet files only in subfolders ({nested.relative_to(data)}), "
            "the engine reads data/<table>/*.parquet"
            if nested
            else f"; data/{name}/ exists but holds no .parquet files"
        )
    if catalog.view(name):
        msg += "; there is a view of that name, but views are never executed for local tables"
    return msg


def _missing_fix(name: str) -> str:
    return (
        f"write the data to data/{name}.parquet (or data/{name}/*.parquet, or CREATE TABLE {name} AS ... "
        "inside extract.duckdb), or DELETE its _meta row if the table is gone"
    )


def check_orphans(
    catalog: Catalog, extract_dir: Path, meta_names: set[str], report: Report, bad_files: BadFiles | None = None
) -> None:
    """Parquet files/folders and base tables that no `_meta` row describes."""
    lowered = {n.lower() for n in meta_names}
    data = extract_dir / "data"
    orphans: list[tuple[str, str]] = []
    if data.is_dir() and not (bad_files is not None and bad_files.blocked("data")):
        for p in sorted(data.iterdir()):
            if bad_files is not None and bad_files.blocked(f"data/{p.name}"):
                continue  # a link or special file: already reported
            if p.is_file() and p.suffix == ".parquet" and p.stem not in meta_names:
                orphans.append((p.stem, f"data/{p.name}"))
            elif p.is_dir() and _dir_parquet(p) and p.name not in meta_names:
                orphans.append((p.name, f"data/{p.name}/"))
    for key, name in sorted(catalog.tables.items()):
        if key not in CONTRACT_TABLES and key not in lowered:
            orphans.append((name, f"base table {name} in extract.duckdb"))
    for name, where in orphans:
        report.add(
            "data_without_meta",
            name,
            f"{where} has no _meta row, so it would never be published",
            f"INSERT INTO _meta (table_name, rows, extracted_at, query_mode) VALUES ({sql_str(name)}, <rows>, "
            "<naive UTC timestamp>, 'local') — or delete the data if it is not meant to be published",
        )
