"""Links and special files, and damaged data behind an intact footer or catalog.

A symlink in an extract would let one source serve another source's data (or
any file the server can read); the validator walks the folder with lstat and
refuses every link and special file, without ever reading through one. The
deep read (the default, which the sync runs before publishing) decodes every
parquet page and reads every column of every base table.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from contract_tests.fixtures import build_valid_extract

from .helpers import BEFORE_NOW, check, codes, only, run_sql


def _other_source(tmp_path: Path) -> Path:
    """Another source's published extract, which a link could serve."""
    return build_valid_extract(tmp_path / "other_source", extracted_at=BEFORE_NOW)


def test_parquet_file_symlink_to_outside_the_extract(extract: Path, tmp_path: Path) -> None:
    other = _other_source(tmp_path)
    target = extract / "data" / "orders.parquet"
    target.unlink()
    target.symlink_to(other / "data" / "orders.parquet")  # same rows: only the link is wrong
    v = only(check(extract), "data_symlink")
    assert v.table == "orders"
    assert "data/orders.parquet is a symbolic link" in v.message and str(other) in v.message
    assert "copy" in v.fix


def test_parquet_file_symlink_inside_the_extract(extract: Path) -> None:
    data = extract / "data"
    (data / "orders.parquet").rename(data / "stash.bin")
    (data / "orders.parquet").symlink_to("stash.bin")
    v = only(check(extract), "data_symlink")
    assert v.table == "orders"


def test_dangling_symlink(extract: Path) -> None:
    (extract / "data" / "orders.parquet").unlink()
    (extract / "data" / "orders.parquet").symlink_to("/nonexistent/orders.parquet")
    only(check(extract), "data_symlink")


def test_partition_folder_symlink(extract: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    shutil.move(extract / "data" / "events", outside)
    (extract / "data" / "events").symlink_to(outside, target_is_directory=True)
    v = only(check(extract), "data_symlink")
    assert v.table == "events" and "data/events" in v.message


def test_partition_part_symlink(extract: Path, tmp_path: Path) -> None:
    part = extract / "data" / "events" / "part-1.parquet"
    shutil.move(part, tmp_path / "part-1.parquet")
    part.symlink_to(tmp_path / "part-1.parquet")
    v = only(check(extract), "data_symlink")
    assert v.table == "events" and "data/events/part-1.parquet" in v.message


def test_data_folder_symlink(extract: Path, tmp_path: Path) -> None:
    shutil.move(extract / "data", tmp_path / "data_elsewhere")
    (extract / "data").symlink_to(tmp_path / "data_elsewhere", target_is_directory=True)
    v = only(check(extract), "data_symlink")
    assert v.table is None and v.message.startswith("data is a symbolic link")


def test_extract_duckdb_symlink_is_never_opened(extract: Path, tmp_path: Path) -> None:
    other = _other_source(tmp_path)
    (extract / "extract.duckdb").unlink()
    (extract / "extract.duckdb").symlink_to(other / "extract.duckdb")
    report = check(extract)
    v = only(report, "data_symlink")
    assert v.table is None and "extract.duckdb is a symbolic link" in v.message
    assert report.tables == []  # nothing was read through the link
    # Passing the file itself changes nothing.
    assert codes(check(extract / "extract.duckdb")) == ["data_symlink"]


def test_fifo_in_data(extract: Path) -> None:
    os.mkfifo(extract / "data" / "stream.parquet")
    v = only(check(extract), "not_a_regular_file")  # and the check does not hang on it
    assert v.table == "stream" and "FIFO" in v.message


def test_hard_links_are_regular_files(extract: Path, tmp_path: Path) -> None:
    # The sync's carry-over hard-links unchanged parquet from the previous run: that stays valid.
    other = _other_source(tmp_path)
    (extract / "data" / "orders.parquet").unlink()
    os.link(other / "data" / "orders.parquet", extract / "data" / "orders.parquet")
    assert check(extract).ok


# --- damaged data behind an intact footer / catalog ---------------------------------------


def _add_big_parquet(extract: Path, **write_options) -> Path:
    f = extract / "data" / "big.parquet"
    table = pa.table({"id": pa.array(range(100_000), pa.int64()), "s": [f"value-{i}" for i in range(100_000)]})
    pq.write_table(table, f, row_group_size=25_000, **write_options)
    run_sql(extract, f"INSERT INTO _meta VALUES ('big', NULL, 100000, NULL, TIMESTAMP '{BEFORE_NOW}', 'local')")
    return f


def _flip(path: Path, offset: int, length: int) -> None:
    raw = bytearray(path.read_bytes())
    for i in range(offset, offset + length):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_parquet_with_corrupt_data_pages_but_intact_footer(extract: Path) -> None:
    f = _add_big_parquet(extract, compression="zstd")
    assert check(extract).ok
    meta = pq.read_metadata(f).row_group(2).column(1)  # a page in the middle of the file
    _flip(f, meta.data_page_offset + 64, 256)
    pq.read_metadata(f)  # the footer still reads: the old footer-only check passed this file
    assert check(extract, deep=False).ok
    v = only(check(extract), "parquet_unreadable")
    assert v.table == "big" and "data/big.parquet" in v.message and "rewrite" in v.fix


def test_parquet_page_checksums_are_verified(extract: Path) -> None:
    # Uncompressed PLAIN pages decode whatever the bytes are; only the page checksum notices.
    f = _add_big_parquet(extract, compression="none", use_dictionary=False, write_page_checksum=True)
    meta = pq.read_metadata(f).row_group(1).column(0)
    _flip(f, meta.data_page_offset + meta.total_compressed_size // 2, 8)
    assert check(extract, deep=False).ok
    v = only(check(extract), "parquet_unreadable")
    assert "checksum" in v.message.lower()


def test_probe_flipped_bytes_after_magic(extract: Path) -> None:
    # The audit's probe: the first page header of a small file overwritten, footer intact.
    _flip(extract / "data" / "orders.parquet", 8, 52)
    only(check(extract), "parquet_unreadable")


def test_base_table_with_a_corrupt_data_block(tmp_path: Path) -> None:
    extract = build_valid_extract(tmp_path / "extract", extracted_at=BEFORE_NOW)
    run_sql(
        extract,
        "CREATE TABLE big AS SELECT i AS id, md5(i::VARCHAR) AS s, i * 0.5 AS x FROM range(300000) t(i)",
        f"INSERT INTO _meta VALUES ('big', NULL, 300000, NULL, TIMESTAMP '{BEFORE_NOW}', 'local')",
    )
    assert check(extract).ok
    db = extract / "extract.duckdb"
    _flip(db, db.stat().st_size // 2, 4096)  # 4 KB in the middle: data blocks of `big`
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM big").fetchone() == (300000,)  # count(*) never notices
    con.close()
    assert check(extract, deep=False).ok
    v = only(check(extract), "base_table_unreadable")
    assert v.table == "big" and "checksum" in v.message.lower()
    assert "CREATE OR REPLACE TABLE" in v.fix


@pytest.mark.parametrize("deep", [True, False])
def test_valid_extract_passes_both_ways(extract: Path, deep: bool) -> None:
    assert check(extract, deep=deep).ok
