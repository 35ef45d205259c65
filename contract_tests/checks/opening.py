"""Finding and opening extract.duckdb without ever changing it.

The file is opened READ_ONLY in place (no copy): a read-only open takes a
shared lock and never checkpoints or rewrites the WAL. Failures are mapped to
stable codes — a newer storage format, a writer's lock, garbage bytes —
because DuckDB's own messages do not say what a connector author should do.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

import duckdb

from ..report import Report
from ..spec import PINNED_DUCKDB

EXTRACT_FILE = "extract.duckdb"
DATA_DIR = "data"

#: DuckDB main header: 8-byte checksum, b"DUCK", uint64 storage version,
#: 4 x uint64 flags, 32-byte library version ("v1.5.5"), 32-byte source id.
_MAGIC_OFFSET = 8
_VERSION_OFFSET = 12
_LIBRARY_OFFSET = 52
_LIBRARY_LEN = 32

_REEXPORT = (
    f"re-export with duckdb=={PINNED_DUCKDB} (pip install duckdb=={PINNED_DUCKDB}), "
    f"or from a newer DuckDB write it with ATTACH 'extract.duckdb' (STORAGE_VERSION 'v{PINNED_DUCKDB}')"
)


@dataclass(frozen=True)
class Header:
    """What the first bytes of a DuckDB file say about who wrote it."""

    storage_version: int
    library_version: str


def locate(path: Path) -> tuple[Path, Path]:
    """Accept the extract folder or its extract.duckdb; return (folder, db file)."""
    if path.is_file() or path.name == EXTRACT_FILE:
        return path.parent, path
    return path, path / EXTRACT_FILE


def read_header(db_file: Path) -> Header | None:
    """Parse the main header, or None when the file is not a DuckDB file."""
    try:
        with db_file.open("rb") as f:
            head = f.read(_LIBRARY_OFFSET + _LIBRARY_LEN)
    except OSError:
        return None
    if len(head) < _LIBRARY_OFFSET + _LIBRARY_LEN or head[_MAGIC_OFFSET:_VERSION_OFFSET] != b"DUCK":
        return None
    (version,) = struct.unpack_from("<Q", head, _VERSION_OFFSET)
    lib = head[_LIBRARY_OFFSET:].split(b"\x00", 1)[0].decode("ascii", "replace")
    return Header(version, lib)


def open_readonly(db_file: Path, report: Report) -> duckdb.DuckDBPyConnection | None:
    """Open READ_ONLY and lock the connection down; on failure add one violation."""
    if db_file.is_dir():
        report.add(
            "extract_corrupt",
            None,
            f"{db_file} is a directory, not a DuckDB database file",
            f"write the extract as a single DuckDB {PINNED_DUCKDB} file named {EXTRACT_FILE}",
        )
        return None
    try:
        con = duckdb.connect(
            str(db_file),
            read_only=True,
            config={
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
                "allow_community_extensions": False,
            },
        )
    except duckdb.Error as exc:
        _map_open_error(db_file, exc, report)
        return None
    try:
        # Nothing below needs the filesystem: parquet is read with pyarrow.
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except duckdb.Error:
        con.close()
        raise
    return con


def _map_open_error(db_file: Path, exc: duckdb.Error, report: Report) -> None:
    text = str(exc)
    first = text.splitlines()[0] if text else type(exc).__name__
    header = read_header(db_file)
    if "lock" in text.lower() and ("conflicting lock" in text.lower() or "could not set lock" in text.lower()):
        report.add(
            "extract_locked",
            None,
            f"{db_file} is held open for writing by another process: {first}",
            "close the writing connection (con.close()) or stop the connector process, then run the check again",
        )
        return
    m = re.search(r"version number (\d+), but we can only read versions? (?:between )?(\d+)(?: and (\d+))?", text)
    newer = "newer version of duckdb" in text.lower() or (
        m is not None and int(m.group(1)) > int(m.group(3) or m.group(2))
    )
    if newer:
        written = f"DuckDB {header.library_version} " if header and header.library_version else "a newer DuckDB "
        storage = f"storage version {m.group(1)}" if m else "a newer storage format"
        readable = f" (it reads storage versions {m.group(2)}-{m.group(3) or m.group(2)})" if m else ""
        report.add(
            "newer_duckdb",
            None,
            f"{db_file} was written by {written}with {storage}; DuckDB {PINNED_DUCKDB} cannot read it{readable}",
            _REEXPORT,
        )
        return
    if m is not None or header is None or "corrupt" in text.lower() or "not a valid duckdb" in text.lower():
        report.add(
            "extract_corrupt",
            None,
            f"{db_file} is not a readable DuckDB database file: {first}",
            f"rewrite it with duckdb=={PINNED_DUCKDB}: connect, create _meta and the tables, then con.close(); "
            "copy it only after the connection is closed",
        )
        return
    report.add(
        "extract_unreadable",
        None,
        f"DuckDB {PINNED_DUCKDB} cannot open {db_file}: {first}",
        f"open it yourself with duckdb=={PINNED_DUCKDB} and read_only=True to see the full error, then re-export",
    )


def check_wal(db_file: Path, report: Report) -> None:
    """A leftover WAL means the writer never closed cleanly; copying the file alone loses data."""
    wal = db_file.with_name(db_file.name + ".wal")
    if wal.exists():
        report.add(
            "extract_wal_present",
            None,
            f"{wal.name} exists beside {db_file.name}: the writer did not close the database cleanly, "
            "and changes still in the WAL are lost when the file is published",
            "close the connection with con.close() (or run CHECKPOINT) before handing the extract over; "
            f"to repair, open it once read-write with duckdb=={PINNED_DUCKDB}, run CHECKPOINT and close it",
        )
