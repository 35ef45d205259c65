"""One local table of a published run as ONE Parquet file, and a content hash for it.

Data is read where the contract puts it -- `data/<t>.parquet`, `data/<t>/*.parquet`
or a base table inside extract.duckdb, in that order -- never through the
extract's own views. A single file is sent as it is; partitions and base
tables are re-encoded batch by batch (each batch becomes one row group that
is handed out at once), so memory stays bounded by one batch.

The hash (the manifest's `hash`, the download's ETag) is derived from the
CONTENT, not the run id, so re-syncing unchanged data keeps it and `agnes
pull` skips the download: sha256 of the file bytes (of each partition's name
and bytes, for partitioned tables); for a base table, sha256 of its column
types, row count and an order-insensitive sum of row hashes. Runs are
immutable, so callers may cache it per (run, table).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from agnes.engine.connection import lock_down, quote_ident, sql_literal
from agnes.engine.encode import ChunkSink
from agnes.engine.extract_reader import TABLE_RE, list_objects

CHUNK = 1024 * 1024
BATCH_ROWS = 100_000


class ExportError(Exception):
    """The table has no local data in this run (the message names no path)."""


@dataclass(frozen=True)
class TableData:
    name: str
    kind: str  # "file" | "files" | "base"
    files: tuple[Path, ...] = ()
    db: Path | None = None

    @property
    def exact(self) -> bool:
        """True when the download is the stored file byte for byte (a strong ETag)."""
        return self.kind == "file"


def locate(run_path: Path, name: str) -> TableData:
    if not TABLE_RE.match(name):
        raise ExportError(f"{name!r} is not a table name")
    data = run_path / "data"
    single = data / f"{name}.parquet"
    if single.is_file():
        return TableData(name, "file", (single,))
    folder = data / name
    if folder.is_dir():
        files = tuple(sorted(folder.glob("*.parquet")))
        if files:
            return TableData(name, "files", files)
    db = run_path / "extract.duckdb"
    if db.is_file() and name in list_objects(db)[0]:
        return TableData(name, "base", db=db)
    raise ExportError(f"table {name!r} has no local data in the published run")


def _connect(data: TableData) -> duckdb.DuckDBPyConnection:
    """A private, locked connection that can read only this run."""
    con = duckdb.connect(":memory:", config={
        "autoinstall_known_extensions": "false", "autoload_known_extensions": "false",
        "allow_community_extensions": "false", "python_enable_replacements": "false",
        "threads": "2", "memory_limit": "512MB",
    })
    if data.db is not None:
        con.execute(f"ATTACH {sql_literal(str(data.db))} AS x (READ_ONLY)")
    run = (data.db.parent if data.db is not None else data.files[0].parent)
    lock_down(con, [run])
    return con


def _select(data: TableData) -> str:
    if data.kind == "base":
        return f"SELECT * FROM x.main.{quote_ident(data.name)}"
    files = ", ".join(sql_literal(str(f)) for f in data.files)
    return f"SELECT * FROM read_parquet([{files}])"


def content_hash(data: TableData) -> str:
    digest = hashlib.sha256()
    if data.kind in ("file", "files"):
        for path in data.files:
            if data.kind == "files":
                digest.update(path.name.encode() + b"\0")
            with path.open("rb") as f:
                while block := f.read(CHUNK):
                    digest.update(block)
        return digest.hexdigest()
    con = _connect(data)
    try:
        types = con.execute(f"DESCRIBE {_select(data)}").fetchall()
        row = con.execute(f"SELECT count(*), sum(hash(t))::VARCHAR FROM ({_select(data)}) t").fetchone()
    finally:
        con.close()
    digest.update(repr([(c[0], c[1]) for c in types]).encode() + repr(row).encode())
    return digest.hexdigest()


def parquet_chunks(data: TableData) -> Iterator[bytes]:
    """The table as one Parquet file, chunk by chunk (a sync generator: run it off the event loop).

    The first `next()` opens everything and yields b"", so errors surface before a response starts.
    """
    if data.kind == "file":
        with data.files[0].open("rb") as f:
            yield b""  # opened: the caller may start the response
            while block := f.read(CHUNK):
                yield block
        return
    con = _connect(data)
    try:
        reader = con.sql(_select(data)).to_arrow_reader(BATCH_ROWS)
        sink = ChunkSink()
        with pq.ParquetWriter(sink, reader.schema, compression="zstd") as writer:  # type: ignore[arg-type]
            yield b""  # bound and ready: the caller may start the response
            yield sink.take()
            for batch in reader:
                writer.write_batch(batch)
                yield sink.take()
        yield sink.take()
    finally:
        con.close()
