"""Local data: each local `_meta` row has exactly one readable data form, and back."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from .helpers import BEFORE_NOW, check, codes, only, run_sql


def test_meta_row_without_any_data(extract: Path) -> None:
    run_sql(extract, f"INSERT INTO _meta VALUES ('ghost', NULL, 1, NULL, TIMESTAMP '{BEFORE_NOW}', 'local')")
    v = only(check(extract), "data_missing")
    assert v.table == "ghost"
    assert "data/ghost.parquet" in v.fix


def test_missing_parquet_file(extract: Path) -> None:
    (extract / "data" / "orders.parquet").unlink()
    v = only(check(extract), "data_missing")
    assert v.table == "orders"
    # The fixture's standalone view still exists, and must not count as data.
    assert "views are never executed" in v.message


def test_partition_folder_without_parquet_files(extract: Path) -> None:
    for f in (extract / "data" / "events").iterdir():
        f.unlink()
    v = only(check(extract), "data_missing")
    assert "holds no .parquet files" in v.message


def test_partition_files_nested_in_subfolders(extract: Path) -> None:
    events = extract / "data" / "events"
    (events / "year=2026").mkdir()
    for f in list(events.glob("*.parquet")):
        f.rename(events / "year=2026" / f.name)
    v = only(check(extract), "data_missing")
    assert "subfolders" in v.message


def test_local_table_with_only_a_view(extract: Path) -> None:
    run_sql(
        extract,
        "CREATE VIEW totals AS SELECT 1 AS n",
        f"INSERT INTO _meta VALUES ('totals', NULL, 1, NULL, TIMESTAMP '{BEFORE_NOW}', 'local')",
    )
    v = only(check(extract), "data_missing")
    assert "views are never executed" in v.message


def test_parquet_file_without_meta_row(extract: Path) -> None:
    pq.write_table(pa.table({"a": [1]}), extract / "data" / "stray.parquet")
    v = only(check(extract), "data_without_meta")
    assert v.table == "stray"
    assert "INSERT INTO _meta" in v.fix


def test_parquet_folder_without_meta_row(extract: Path) -> None:
    (extract / "data" / "stray_dir").mkdir()
    pq.write_table(pa.table({"a": [1]}), extract / "data" / "stray_dir" / "p0.parquet")
    v = only(check(extract), "data_without_meta")
    assert v.table == "stray_dir"


def test_base_table_without_meta_row(extract: Path) -> None:
    run_sql(extract, "CREATE TABLE scratch AS SELECT 1 AS a")
    v = only(check(extract), "data_without_meta")
    assert v.table == "scratch"


def test_unrelated_files_and_views_are_ignored(remote_extract: Path) -> None:
    # Helper views are allowed as long as they do not read a declared remote alias: a view over
    # `pg.…` without a _meta row is a forgotten remote table (view_without_meta, test_remote.py).
    (remote_extract / "data" / "README.txt").write_text("notes")
    (remote_extract / "manifest.json").write_text("{}")
    run_sql(
        remote_extract,
        "CREATE VIEW helper AS SELECT 42 AS answer",
        "CREATE VIEW customer_names AS SELECT name FROM customers",
    )
    assert check(remote_extract).ok


def test_corrupt_parquet_file(extract: Path) -> None:
    (extract / "data" / "orders.parquet").write_bytes(b"PAR1 definitely not parquet")
    v = only(check(extract), "parquet_unreadable")
    assert v.table == "orders"
    assert "data/orders.parquet" in v.message


def test_truncated_parquet_part(extract: Path) -> None:
    part = extract / "data" / "events" / "part-1.parquet"
    part.write_bytes(part.read_bytes()[:-20])  # a writer killed mid-file loses the footer
    v = only(check(extract), "parquet_unreadable")
    assert "data/events/part-1.parquet" in v.message


def test_parts_with_different_schemas(extract: Path) -> None:
    pq.write_table(pa.table({"id": ["x"], "kind": [1]}), extract / "data" / "events" / "part-2.parquet")
    run_sql(extract, "UPDATE _meta SET rows = 6 WHERE table_name = 'events'")
    only(check(extract), "parquet_schema_mismatch")


@pytest.mark.parametrize("second", ["dir", "base_table"])
def test_table_with_two_data_forms(extract: Path, second: str) -> None:
    if second == "dir":
        (extract / "data" / "orders").mkdir()
        shutil.copy(extract / "data" / "orders.parquet", extract / "data" / "orders" / "p.parquet")
    else:
        run_sql(extract, "DROP VIEW orders", "CREATE TABLE orders AS SELECT 1 AS id")
    v = only(check(extract), "data_ambiguous")
    assert v.table == "orders"


def test_parquet_rows_are_counted_from_metadata(extract: Path) -> None:
    big = pa.table({"x": pa.array(range(200_000))})
    pq.write_table(big, extract / "data" / "big.parquet", row_group_size=50_000)
    run_sql(extract, f"INSERT INTO _meta VALUES ('big', NULL, 200000, NULL, TIMESTAMP '{BEFORE_NOW}', 'local')")
    report = check(extract)
    assert report.ok, report.to_text()
    assert {t.name: t.rows for t in report.tables}["big"] == 200_000
    assert codes(report) == []
