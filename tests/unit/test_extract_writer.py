"""ExtractWriter: real DuckDB files and parquet, checked against the frozen contract."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from contract_tests.spec import META_SQL, REMOTE_ATTACH_SQL
from contract_tests.validator import validate_extract

from agnes.extract import ExtractWriter, utc_naive


def _table(n: int = 5) -> pa.Table:
    return pa.table({"id": pa.array(range(n), pa.int64()), "name": [f"n{i}" for i in range(n)]})


def _meta(out: Path) -> list[tuple]:
    con = duckdb.connect(str(out / "extract.duckdb"), read_only=True)
    try:
        return con.execute("SELECT * FROM _meta ORDER BY table_name").fetchall()
    finally:
        con.close()


def _validate(out: Path) -> None:
    report = validate_extract(out)
    assert report.ok, report.violations


def test_meta_and_remote_attach_are_exactly_the_contract(tmp_path: Path) -> None:
    out = tmp_path / "x"
    with ExtractWriter(out) as w:
        w.add_arrow("orders", _table())
    ref = duckdb.connect()
    # The frozen spec files themselves, not a copy of their DDL.
    ref.execute(META_SQL.read_text(encoding="utf-8"))
    ref.execute(REMOTE_ATTACH_SQL.read_text(encoding="utf-8"))
    con = duckdb.connect(str(out / "extract.duckdb"), read_only=True)
    q = "SELECT table_name, sql FROM duckdb_tables() WHERE table_name IN ('_meta', '_remote_attach') ORDER BY 1"
    assert con.execute(q).fetchall() == ref.execute(q).fetchall()
    tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
    assert tables == ["_meta", "_remote_attach"]
    con.close()


def test_add_arrow_writes_zstd_parquet_and_counts_itself(tmp_path: Path) -> None:
    out = tmp_path / "x"
    at = datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    with ExtractWriter(out) as w:
        info = w.add_arrow("orders", _table(7), description="Orders", extracted_at=at)
        w.add_arrow("batches", iter(_table(3).to_batches()), schema=_table().schema)
        w.add_arrow("reader", _table(4).to_reader())
    f = out / "data" / "orders.parquet"
    assert info.rows == 7 and info.size_bytes == f.stat().st_size and info.path == f
    assert pq.ParquetFile(f).metadata.row_group(0).column(0).compression == "ZSTD"
    assert _meta(out) == [
        ("batches", None, 3, (out / "data/batches.parquet").stat().st_size, _meta(out)[0][4], "local"),
        ("orders", "Orders", 7, f.stat().st_size, datetime(2024, 5, 1, 10, 0), "local"),
        ("reader", None, 4, (out / "data/reader.parquet").stat().st_size, _meta(out)[2][4], "local"),
    ]
    assert not list(out.rglob("*.part"))
    _validate(out)


def test_add_arrow_without_schema_for_plain_batches_is_refused(tmp_path: Path) -> None:
    with ExtractWriter(tmp_path / "x") as w, pytest.raises(TypeError, match="schema="):
        w.add_arrow("t", iter(_table().to_batches()))


def test_add_relation_from_relation_and_sql(tmp_path: Path) -> None:
    out = tmp_path / "x"
    other = duckdb.connect()
    rel = other.sql("SELECT range AS id, range * 2 AS twice FROM range(100)")
    with ExtractWriter(out) as w:
        a = w.add_relation("from_rel", rel)
        b = w.add_relation("from_sql", "SELECT 1 AS x, 'y' AS y UNION ALL SELECT 2, 'z'")
        w.con.execute("CREATE TEMP VIEW tv AS SELECT 42 AS answer")
        c = w.add_relation("from_temp_view", "SELECT * FROM tv")
    assert (a.rows, b.rows, c.rows) == (100, 2, 1)
    assert duckdb.sql(f"SELECT sum(twice) FROM '{out}/data/from_rel.parquet'").fetchone()[0] == 9900
    assert pq.ParquetFile(out / "data/from_sql.parquet").metadata.row_group(0).column(0).compression == "ZSTD"
    _validate(out)


def test_failed_query_leaves_no_file_and_no_row(tmp_path: Path) -> None:
    out = tmp_path / "x"
    with ExtractWriter(out) as w:
        with pytest.raises(duckdb.Error):
            w.add_relation("bad", "SELECT * FROM no_such_table")
        w.add_arrow("bad", _table())  # the name is still free
    assert [r[0] for r in _meta(out)] == ["bad"]
    assert sorted(p.name for p in (out / "data").iterdir()) == ["bad.parquet"]


def test_add_parquet_files_partitioned_single_and_move(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        pq.write_table(_table(10 + i), src / f"p{i}.parquet")
    out = tmp_path / "x"
    with ExtractWriter(out) as w:
        parts = w.add_parquet_files("events", sorted(src.glob("*.parquet")))
        single = w.add_parquet_files("one", [src / "p0.parquet"], partitioned=False)
        moved = w.add_parquet_files("moved", [src / "p2.parquet"], partitioned=True, move=True)
    assert parts.rows == 33 and parts.path == out / "data/events"
    assert sorted(p.name for p in (out / "data/events").iterdir()) == [f"part-0000{i}.parquet" for i in range(3)]
    assert parts.size_bytes == sum(p.stat().st_size for p in (out / "data/events").iterdir())
    assert single.rows == 10 and (out / "data/one.parquet").is_file()
    assert moved.rows == 12 and not (src / "p2.parquet").exists() and (src / "p1.parquet").exists()
    _validate(out)


def test_add_parquet_files_refuses_bad_input(tmp_path: Path) -> None:
    pq.write_table(_table(), tmp_path / "a.parquet")
    pq.write_table(pa.table({"other": [1.5]}), tmp_path / "b.parquet")
    (tmp_path / "c.parquet").write_text("not parquet")
    with ExtractWriter(tmp_path / "x") as w:
        with pytest.raises(ValueError, match="another schema"):
            w.add_parquet_files("t", [tmp_path / "a.parquet", tmp_path / "b.parquet"])
        with pytest.raises(ValueError, match="not a readable parquet file"):
            w.add_parquet_files("t", [tmp_path / "c.parquet"])
        with pytest.raises(ValueError, match="no files"):
            w.add_parquet_files("t", [])
        with pytest.raises(ValueError, match="partitioned=True"):
            w.add_parquet_files("t", [tmp_path / "a.parquet"] * 2, partitioned=False)
    assert not (tmp_path / "x/data/t").exists() and not list((tmp_path / "x").rglob("*.part"))


def test_names_are_validated_and_unique(tmp_path: Path) -> None:
    with ExtractWriter(tmp_path / "x") as w:
        with pytest.raises(ValueError, match="normalize_table_name"):
            w.add_arrow("Orders 2024", _table())
        with pytest.raises(ValueError, match="reserved"):
            w.add_arrow("_meta", _table())
        w.add_arrow("orders", _table())
        with pytest.raises(ValueError, match="already added.*another name"):
            w.add_arrow("orders", _table())
        with pytest.raises(ValueError, match="already added"):
            w.add_relation("orders", "SELECT 1")


def test_extracted_at_is_naive_utc() -> None:
    aware = datetime(2024, 1, 1, 1, 30, tzinfo=timezone(timedelta(hours=3)))
    assert utc_naive(aware) == datetime(2023, 12, 31, 22, 30)
    assert utc_naive(datetime(2024, 1, 1)) == datetime(2024, 1, 1)
    now = utc_naive(None)
    assert now.tzinfo is None and abs(now - datetime.now(UTC).replace(tzinfo=None)) < timedelta(seconds=5)
    with pytest.raises(TypeError):
        utc_naive("2024-01-01")  # type: ignore[arg-type]


def test_exception_in_block_writes_no_meta(tmp_path: Path) -> None:
    out = tmp_path / "x"
    with pytest.raises(RuntimeError), ExtractWriter(out) as w:
        w.add_arrow("orders", _table())
        raise RuntimeError("source went away")
    con = duckdb.connect(str(out / "extract.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = '_meta'").fetchone() == (0,)
    con.close()
    with pytest.raises(RuntimeError, match="closed"):
        w.add_arrow("late", _table())


def test_refuses_an_existing_extract(tmp_path: Path) -> None:
    with ExtractWriter(tmp_path / "x"):
        pass
    with pytest.raises(FileExistsError, match="empty directory"):
        ExtractWriter(tmp_path / "x")


def test_empty_extract_is_valid(tmp_path: Path) -> None:
    with ExtractWriter(tmp_path / "x"):
        pass
    assert _meta(tmp_path / "x") == []
    _validate(tmp_path / "x")


def test_remote_table_view_and_attach_row(tmp_path: Path) -> None:
    out = tmp_path / "x"
    with ExtractWriter(out) as w:
        w.declare_remote_attach(alias="pg", extension="postgres", url="host=db dbname=shop", token_env="PG_PASSWORD")
        with pytest.raises(ValueError, match="ATTACH first"):
            w.add_remote("big_orders", alias="pg", select_sql="SELECT * FROM pg.main.orders")
        w.con.execute("ATTACH ':memory:' AS pg")  # stands in for the real postgres ATTACH
        w.con.execute("CREATE TABLE pg.main.orders AS SELECT 1 AS id")
        info = w.add_remote("big_orders", alias="pg", select_sql="SELECT * FROM pg.main.orders", description="d")
        with pytest.raises(ValueError, match="not declared"):
            w.add_remote("other", alias="kbc", select_sql="SELECT 1")
        with pytest.raises(ValueError, match="already declared"):
            w.declare_remote_attach(alias="pg", extension="postgres", url="host=x", token_env="PG_PASSWORD")
        with pytest.raises(ValueError, match="NAME of an environment variable"):
            w.declare_remote_attach(alias="bq", extension="bigquery", url="project=p", token_env="ya29.secret-token")
        with pytest.raises(ValueError, match="contains a secret"):
            w.declare_remote_attach(alias="bq", extension="bigquery", url="host=x password=123", token_env=None)
        w.add_arrow("local_one", _table())
    assert info.query_mode == "remote" and info.rows is None
    con = duckdb.connect(str(out / "extract.duckdb"), read_only=True)
    assert con.execute("SELECT table_name, rows, size_bytes, query_mode FROM _meta ORDER BY 1").fetchall() == [
        ("big_orders", None, None, "remote"),
        ("local_one", 5, (out / "data/local_one.parquet").stat().st_size, "local"),
    ]
    assert con.execute("SELECT * FROM _remote_attach").fetchall() == [
        ("pg", "postgres", "host=db dbname=shop", "PG_PASSWORD")
    ]
    view_sql = con.execute("SELECT sql FROM duckdb_views() WHERE view_name = 'big_orders'").fetchone()[0]
    assert "pg.main.orders" in view_sql
    assert "pg" not in {r[0] for r in con.execute("SELECT database_name FROM duckdb_databases()").fetchall()}
    con.close()
    _validate(out)
