"""Finding and opening extract.duckdb: missing, corrupt, locked, newer, unclean."""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from contract_tests import validate_extract
from contract_tests.checks.opening import read_header
from contract_tests.fixtures import VALID_TABLES

from .helpers import check, codes, only, run_sql


def test_valid_extract_passes(extract: Path) -> None:
    report = check(extract)
    assert report.ok, report.to_text()
    assert report.violations == []
    got = {t.name: (t.query_mode, t.data_kind, t.rows, t.meta_rows) for t in report.tables}
    assert got == {
        "orders": ("local", "parquet_file", 3, 3),
        "events": ("local", "parquet_dir", 5, 5),
        "customers": ("local", "base_table", 4, 4),
    }
    assert set(got) == set(VALID_TABLES)


def test_valid_remote_extract_passes(remote_extract: Path) -> None:
    report = check(remote_extract, source_name="sample")
    assert report.ok, report.to_text()
    remote = [t for t in report.tables if t.query_mode == "remote"]
    assert [(t.name, t.data_kind) for t in remote] == [("remote_orders", "remote_view")]


def test_the_extract_duckdb_path_itself_is_accepted(extract: Path) -> None:
    assert check(extract / "extract.duckdb").ok


def test_default_clock_is_now(extract: Path) -> None:
    assert validate_extract(extract).ok


def test_missing_extract_duckdb(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    v = only(check(tmp_path), "extract_missing")
    assert "extract.duckdb" in v.message


def test_missing_folder(tmp_path: Path) -> None:
    v = only(check(tmp_path / "nope"), "extract_missing")
    assert "does not exist" in v.message


@pytest.mark.parametrize("content", [b"", b"this is not a database" * 500], ids=["empty", "garbage"])
def test_corrupt_extract_duckdb(extract: Path, content: bytes) -> None:
    (extract / "extract.duckdb").write_bytes(content)
    v = only(check(extract), "extract_corrupt")
    assert "1.5.5" in v.fix


def test_extract_duckdb_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "extract.duckdb").mkdir()
    only(check(tmp_path), "extract_corrupt")


def test_file_locked_by_a_writer_in_another_process(extract: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; con = duckdb.connect(sys.argv[1]); print('ready', flush=True); sys.stdin.read()",
            str(extract / "extract.duckdb"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        v = only(check(extract), "extract_locked")
        assert "close" in v.fix
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert check(extract).ok  # the lock is gone with the writer


def _checksum(block: bytes) -> int:
    """DuckDB's block checksum (src/common/checksum.cpp): xor of uint64 words * constant."""
    result = 5381
    for (word,) in struct.iter_unpack("<Q", block):
        result ^= (word * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    return result


def _patch_main_header(db_file: Path, *, storage_version: int, library: bytes) -> None:
    """Rewrite the 4096-byte main header: [checksum][DUCK][version][flags][library]…"""
    data = bytearray(db_file.read_bytes())
    assert data[8:12] == b"DUCK"
    assert _checksum(bytes(data[8:4096])) == struct.unpack_from("<Q", data, 0)[0]  # layout as assumed
    struct.pack_into("<Q", data, 12, storage_version)
    data[52:84] = library.ljust(32, b"\x00")
    struct.pack_into("<Q", data, 0, _checksum(bytes(data[8:4096])))
    db_file.write_bytes(bytes(data))


def test_file_written_by_a_newer_duckdb(extract: Path) -> None:
    db = extract / "extract.duckdb"
    header = read_header(db)
    assert header is not None and header.library_version == "v1.5.5"
    _patch_main_header(db, storage_version=header.storage_version + 1000, library=b"v2.0.1")
    v = only(check(extract), "newer_duckdb")
    assert "v2.0.1" in v.message and "1.5.5" in v.message
    assert "re-export with duckdb==1.5.5" in v.fix


def test_a_newer_writer_with_a_compatible_storage_version_is_fine(extract: Path) -> None:
    db = extract / "extract.duckdb"
    header = read_header(db)
    _patch_main_header(db, storage_version=header.storage_version, library=b"v2.0.1")
    assert check(extract).ok


def test_leftover_wal_from_a_writer_that_died(extract: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import duckdb, os, sys; con = duckdb.connect(sys.argv[1]); "
            "con.execute('INSERT INTO customers VALUES (14, 1)'); os._exit(0)",
            str(extract / "extract.duckdb"),
        ],
        check=True,
    )
    assert (extract / "extract.duckdb.wal").exists()
    report = check(extract)
    # The WAL also holds a fifth customer, so the row count no longer matches.
    assert codes(report) == ["extract_wal_present", "rows_mismatch"], report.to_text()
    assert "CHECKPOINT" in report.violations[0].fix


def _snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_the_authors_files_are_never_modified(remote_extract: Path) -> None:
    run_sql(remote_extract, "UPDATE _meta SET rows = 99 WHERE table_name = 'orders'")
    before = _snapshot(remote_extract)
    report = check(remote_extract)
    assert codes(report) == ["rows_mismatch"]
    assert _snapshot(remote_extract) == before


def test_views_of_local_tables_are_never_executed(extract: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.parquet"
    run_sql(extract, f"COPY (SELECT 1 AS id) TO '{elsewhere.as_posix()}' (FORMAT parquet)")
    run_sql(extract, f"CREATE OR REPLACE VIEW orders AS SELECT * FROM read_parquet('{elsewhere.as_posix()}')")
    os.remove(elsewhere)  # running the view would now fail
    report = check(extract)
    assert report.ok, report.to_text()
    assert {t.name: t.rows for t in report.tables}["orders"] == 3  # counted from data/orders.parquet


def test_truncated_extract_that_cannot_even_be_opened(extract: Path) -> None:
    db = extract / "extract.duckdb"
    db.write_bytes(db.read_bytes()[: 3 * 4096])  # the headers survive, every block is gone
    v = only(check(extract), "extract_unreadable")
    assert "cannot open" in v.message and "read_only=True" in v.fix


def test_truncated_extract_that_fails_while_reading(extract: Path) -> None:
    db = extract / "extract.duckdb"
    raw = db.read_bytes()
    db.write_bytes(raw[: len(raw) * 3 // 8])  # the catalog opens, a later block read fails
    v = only(check(extract), "extract_unreadable")
    assert "reading extract.duckdb failed" in v.message and "close the connection" in v.fix
