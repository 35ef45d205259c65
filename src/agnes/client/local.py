"""The analyst's local copy: Parquet files, what version each is, and a DuckDB file with views.

Layout of the data folder:
    data/<source>/<table>.parquet   one file per table, replaced atomically
    manifest.json                   id -> {hash, rows, size_bytes, extracted_at, file} of the local copy
    agnes.duckdb                    views "source"."table" (and the bare name while unique), rebuilt atomically

Why atomic: a download goes to a hidden temp file in the same folder, is
fsynced and checked (a readable Parquet footer: a cut-off file has none),
and only then renamed over the old file -- an interrupted pull leaves the
previous copy, never a truncated file.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import msgspec

from agnes.durable import fsync_dir

STATE = "manifest.json"
DATABASE = "agnes.duckdb"


class LocalTable(msgspec.Struct, kw_only=True):
    hash: str
    rows: int | None
    size_bytes: int | None
    extracted_at: str | None
    file: str  # relative to the data folder


class LocalState(msgspec.Struct, kw_only=True):
    url: str = ""
    tables: dict[str, LocalTable] = msgspec.field(default_factory=dict)


class LocalFolder:
    def __init__(self, root: Path) -> None:
        self.root = root

    def load(self) -> LocalState:
        try:
            return msgspec.json.decode((self.root / STATE).read_bytes(), type=LocalState)
        except (FileNotFoundError, msgspec.DecodeError):
            return LocalState()

    def save(self, state: LocalState) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.root / STATE, msgspec.json.format(msgspec.json.encode(state)))

    def file_for(self, table_id: str) -> Path:
        source, name = table_id.split(".", 1)
        return self.root / "data" / source / f"{name}.parquet"

    def write_atomically(self, table_id: str, chunks: Iterable[bytes],
                         on_bytes: Callable[[int], None] = lambda n: None) -> Path:
        """Stream `chunks` into the table's file; on any failure the old file (if any) stays as it was."""
        final = self.file_for(table_id)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.part-{secrets.token_hex(4)}")
        try:
            with tmp.open("wb") as f:
                for chunk in chunks:
                    f.write(chunk)
                    on_bytes(len(chunk))
                f.flush()
                os.fsync(f.fileno())
            _check_parquet(tmp)
            os.replace(tmp, final)
            fsync_dir(final.parent)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return final

    def remove(self, table_id: str) -> None:
        self.file_for(table_id).unlink(missing_ok=True)
        folder = self.file_for(table_id).parent
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()

    def build_database(self, state: LocalState) -> Path:
        """agnes.duckdb with one view per local table, written under a temp name and renamed."""
        import duckdb

        from agnes.engine.connection import quote_ident, sql_literal

        final = self.root / DATABASE
        tmp = self.root / f".{DATABASE}.tmp-{secrets.token_hex(4)}"
        owners: dict[str, list[str]] = {}
        for table_id in state.tables:
            owners.setdefault(table_id.split(".", 1)[1], []).append(table_id)
        try:
            con = duckdb.connect(str(tmp))
            try:
                for table_id, table in sorted(state.tables.items()):
                    source, name = table_id.split(".", 1)
                    path = sql_literal(str((self.root / table.file).resolve()))
                    con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(source)}")
                    con.execute(f"CREATE VIEW {quote_ident(source)}.{quote_ident(name)} AS "
                                f"SELECT * FROM read_parquet({path})")
                    if len(owners[name]) == 1:
                        con.execute(f"CREATE VIEW main.{quote_ident(name)} AS SELECT * FROM "
                                    f"{quote_ident(source)}.{quote_ident(name)}")
            finally:
                con.close()
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return final

    def leftovers(self) -> list[Path]:
        """Temp files of pulls that were killed (a live pull never leaves them behind)."""
        data = self.root / "data"
        return sorted(data.rglob(".*.part-*")) if data.is_dir() else []


def _check_parquet(path: Path) -> None:
    """A cut-off download has no footer (Parquet keeps it at the end), so this catches truncation."""
    import pyarrow.parquet as pq

    try:
        pq.ParquetFile(path).metadata  # noqa: B018 -- reading the footer is the check
    except Exception as exc:  # noqa: BLE001 -- any failure means the download is unusable
        raise ValueError(f"the downloaded file is not valid Parquet ({exc})") from None


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def as_local(entry: dict[str, Any], file: str) -> LocalTable:
    return LocalTable(hash=entry["hash"], rows=entry.get("rows"), size_bytes=entry.get("size_bytes"),
                      extracted_at=entry.get("extracted_at"), file=file)
