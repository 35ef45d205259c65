"""sqlite_file: every table of a SQLite database file becomes a table in Agnes.

A small but complete Tier A connector: reads its options from AGNES_CONFIG_JSON,
streams each table in batches through Arrow into the extract with ExtractWriter,
reports per-table progress, and fails one table (not the run) when its data
cannot be read. Types come from the declared column types, with SQLite's
affinity rules: INT* -> BIGINT, REAL/FLOA*/DOUB* -> DOUBLE, BOOL* -> BOOLEAN,
DATE -> DATE, DATETIME/TIMESTAMP -> TIMESTAMP (ISO text, UTC), BLOB -> BLOB,
anything else -> VARCHAR.

Options: {"path": "/data/imports/shop.sqlite", "tables": ["orders"]?, "batch_rows": 50000?}
Secrets: none. Run by hand:
    AGNES_OUTPUT_DIR=/tmp/out AGNES_CONFIG_JSON='{"path": "shop.sqlite"}' python extractor.py
    agnes contract check /tmp/out
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from agnes.extract import ExtractWriter, emit, log, normalize_table_name, read_context


def arrow_type(declared: str) -> tuple[pa.DataType, Callable[[Any], Any]]:
    """The Arrow type of a declared SQLite column type, and how to convert one stored value."""
    t = (declared or "").upper()
    if t.startswith("BOOL"):
        return pa.bool_(), lambda v: None if v is None else bool(v)
    if "INT" in t:
        return pa.int64(), lambda v: None if v is None else int(v)
    if any(k in t for k in ("REAL", "FLOA", "DOUB")):
        return pa.float64(), lambda v: None if v is None else float(v)
    if t == "DATE":
        return pa.date32(), lambda v: None if v is None else date.fromisoformat(str(v)[:10])
    if t in ("DATETIME", "TIMESTAMP"):
        return pa.timestamp("us"), lambda v: None if v is None else datetime.fromisoformat(str(v).replace("Z", ""))
    if "BLOB" in t:
        return pa.binary(), lambda v: None if v is None else bytes(v)
    return pa.string(), lambda v: None if v is None else str(v)


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def read_table(con: sqlite3.Connection, native: str, batch_rows: int) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    columns = con.execute(f"PRAGMA table_info({quoted(native)})").fetchall()  # cid, name, type, ...
    types = [arrow_type(c[2]) for c in columns]
    schema = pa.schema([pa.field(c[1], t) for c, (t, _) in zip(columns, types, strict=True)])
    converters = [conv for _, conv in types]
    names = ", ".join(quoted(c[1]) for c in columns)

    def batches() -> Iterator[pa.RecordBatch]:
        cur = con.execute(f"SELECT {names} FROM {quoted(native)}")
        while rows := cur.fetchmany(batch_rows):
            arrays = [pa.array([conv(r[i]) for r in rows], type=schema.field(i).type)
                      for i, conv in enumerate(converters)]
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)

    return schema, batches()


def main() -> int:
    ctx = read_context()
    path = ctx.config.get("path")
    if not path:
        log('option "path" is missing: configure the source with {"data_source": "custom", "connector": '
            '"sqlite_file", "options": {"path": "/data/imports/shop.sqlite"}} (POST /api/admin/configure)')
        return 2
    db = Path(path)
    if not db.is_file():
        log(f"{db} does not exist or is not a file: mount the database into the container (e.g. a volume "
            f"./imports:/data/imports:ro) and set options.path to its path inside the container")
        return 2
    only = ctx.config.get("tables") or []
    batch_rows = int(ctx.config.get("batch_rows") or 50_000)
    con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)  # never writes the customer's file
    try:
        natives = [r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name")]
        done = failed = 0
        with ExtractWriter(ctx.output_dir) as w:
            for native in natives:
                if only and native not in only:
                    continue
                try:
                    name = normalize_table_name(native)
                except ValueError as e:
                    emit("table_failed", table=native, error=f"cannot name table {native!r}: {e}")
                    failed += 1
                    continue
                if not ctx.wants(name):
                    continue
                emit("table_started", table=name)
                try:
                    schema, batches = read_table(con, native, batch_rows)
                    info = w.add_arrow(name, batches, schema=schema, description=f"SQLite table {native} ({db.name})")
                except (sqlite3.Error, ValueError, TypeError, pa.ArrowException) as e:
                    emit("table_failed", table=name, error=f"{native}: {e}")
                    failed += 1
                    continue
                emit("table_done", table=name, rows=info.rows, bytes=info.size_bytes)
                done += 1
    finally:
        con.close()
    if failed and not done:
        log(f"no table of {db} could be extracted ({failed} failed)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
