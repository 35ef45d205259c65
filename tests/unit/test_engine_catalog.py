"""ServingCatalog against real DuckDB and real parquet files (built with pyarrow)."""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agnes.engine import publish as pub
from agnes.engine.catalog import QueryRefused, ServingCatalog
from agnes.engine.connection import ConnectionPolicy

WHEN = datetime(2026, 11, 30, 12, 0, 0)


def publish_extract(
    extracts: Path, source: str, tables: dict[str, pa.Table], layout: dict[str, str] | None = None, keep: int = 2
) -> Path:
    """Write a contract-shaped extract into staging and publish it; returns the run path."""
    layout = layout or {}
    staging = pub.new_staging_dir(extracts, source)
    data = staging / "data"
    data.mkdir()
    con = duckdb.connect(str(staging / "extract.duckdb"))
    con.execute(
        "CREATE TABLE _meta (table_name VARCHAR NOT NULL, description VARCHAR, rows BIGINT, "
        "size_bytes BIGINT, extracted_at TIMESTAMP, query_mode VARCHAR DEFAULT 'local')"
    )
    for name, table in tables.items():
        kind = layout.get(name, "parquet")
        if kind == "parquet":
            pq.write_table(table, data / f"{name}.parquet")
        elif kind == "partitioned":
            (data / name).mkdir()
            half = table.num_rows // 2
            pq.write_table(table.slice(0, half), data / name / "part-0.parquet")
            pq.write_table(table.slice(half), data / name / "part-1.parquet")
        if kind == "base":
            con.register("incoming", table)
            con.execute(f'CREATE TABLE "{name}" AS SELECT * FROM incoming')
            con.unregister("incoming")
        else:  # a view for standalone use that LIES: the catalog must never run it
            con.execute(f'CREATE VIEW "{name}" AS SELECT 666 AS never_served')
        con.execute(
            "INSERT INTO _meta VALUES (?, ?, ?, ?, ?, 'local')",
            [name, f"the {name} table", table.num_rows, table.nbytes, WHEN],
        )
    con.close()
    return pub.publish(extracts, source, staging, keep=keep).path


def ints(n: int, offset: int = 0) -> pa.Table:
    return pa.table({"id": pa.array(range(offset, offset + n), pa.int64()), "label": [f"r{i}" for i in range(n)]})


@pytest.fixture
def catalog(tmp_path: Path):
    cat = ServingCatalog(tmp_path / "extracts", ConnectionPolicy(threads=2, memory_limit="512MB"))
    yield cat
    cat.close()


def scalar(catalog: ServingCatalog, sql: str):
    return catalog.execute_readonly(sql).column(0)[0].as_py()


def test_same_name_in_two_sources_is_qualified_only_and_reported(catalog: ServingCatalog) -> None:
    ex = catalog.extracts_dir
    publish_extract(ex, "crm", {"orders": ints(3), "accounts": ints(5)})
    publish_extract(ex, "shop", {"orders": ints(7)})
    report = catalog.sync_sources(pub.published_runs(ex))
    assert sorted(report.attached) == ["crm", "shop"] and report.errors == {}
    assert scalar(catalog, 'SELECT count(*) FROM "crm"."orders"') == 3
    assert scalar(catalog, "SELECT count(*) FROM shop.orders") == 7
    assert catalog.collisions == {"orders": ["crm", "shop"]}
    with pytest.raises(duckdb.CatalogException):
        catalog.execute_readonly("SELECT * FROM orders")
    assert scalar(catalog, "SELECT count(*) FROM accounts") == 5  # unique -> bare name works

    publish_extract(ex, "shop", {"items": ints(2)})  # shop drops orders: the name is unique again
    catalog.sync_sources(pub.published_runs(ex))
    assert catalog.collisions == {}
    assert scalar(catalog, "SELECT count(*) FROM orders") == 3
    assert scalar(catalog, "SELECT count(*) FROM items") == 2


def test_bare_names_follow_owners_through_three_sources_and_detaches(catalog: ServingCatalog) -> None:
    """Only real changes of a bare view are executed; every step must still leave exactly the right one."""
    ex = catalog.extracts_dir

    def bare() -> int | None:
        try:
            return scalar(catalog, "SELECT count(*) FROM orders")
        except duckdb.CatalogException:
            return None

    publish_extract(ex, "a", {"orders": ints(1)})
    catalog.sync_sources(pub.published_runs(ex))
    assert bare() == 1
    for source, rows in (("b", 2), ("c", 3)):  # a second, then a third owner: no bare name
        publish_extract(ex, source, {"orders": ints(rows)})
        catalog.sync_sources(pub.published_runs(ex))
        assert bare() is None
    publish_extract(ex, "a", {"orders": ints(4)})  # re-published while colliding: still none
    catalog.sync_sources(pub.published_runs(ex))
    assert bare() is None
    runs = pub.published_runs(ex)
    catalog.sync_sources({"a": runs["a"], "c": runs["c"]})  # b detached: still two owners
    assert bare() is None
    catalog.sync_sources({"c": runs["c"]})  # a detached: c alone owns it
    assert bare() == 3 and catalog.collisions == {}
    publish_extract(ex, "c", {"orders": ints(5)})  # its own re-publish keeps the bare name, with new data
    catalog.sync_sources({"c": pub.published_runs(ex)["c"]})
    assert bare() == 5
    catalog.sync_sources({})
    assert bare() is None


def test_local_layouts_never_run_the_extract_views(catalog: ServingCatalog) -> None:
    ex = catalog.extracts_dir
    layout = {"single": "parquet", "parts": "partitioned", "inside": "base"}
    publish_extract(ex, "crm", {"single": ints(4), "parts": ints(10), "inside": ints(6)}, layout)
    assert catalog.sync_sources(pub.published_runs(ex)).errors == {}
    for name, rows in (("single", 4), ("parts", 10), ("inside", 6)):
        result = catalog.execute_readonly(f"SELECT * FROM crm.{name}")
        assert result.num_rows == rows and result.column_names == ["id", "label"]


def test_tables_metadata(catalog: ServingCatalog) -> None:
    publish_extract(catalog.extracts_dir, "crm", {"orders": ints(3)})
    catalog.sync_sources(pub.published_runs(catalog.extracts_dir))
    (table,) = catalog.tables()
    assert table.id == "crm.orders" and table.source == "crm" and table.name == "orders"
    assert table.description == "the orders table" and table.rows == 3 and table.size_bytes > 0
    assert table.extracted_at == WHEN and table.query_mode == "local" and table.status == "ok"
    assert table.columns == [("id", "BIGINT"), ("label", "VARCHAR")]


def _aliases(catalog: ServingCatalog) -> set[str]:
    rows = catalog.execute_readonly("SELECT database_name FROM duckdb_databases() WHERE database_name LIKE '_x_%'")
    return set(rows.column(0).to_pylist())


def test_republishing_one_source_reattaches_only_it(catalog: ServingCatalog) -> None:
    ex = catalog.extracts_dir
    for source in ("a", "b", "c"):
        publish_extract(ex, source, {f"t_{source}": ints(2)})
    catalog.sync_sources(pub.published_runs(ex))
    before = _aliases(catalog)
    publish_extract(ex, "b", {"t_b": ints(9)})
    report = catalog.sync_sources(pub.published_runs(ex))
    assert report.attached == ["b"] and report.unchanged == ["a", "c"] and not report.rebuilt
    after = _aliases(catalog)
    assert {x for x in before if not x.startswith("_x_b_")} <= after  # a and c untouched
    assert scalar(catalog, "SELECT count(*) FROM t_b") == 9
    again = catalog.sync_sources(pub.published_runs(ex))  # nothing changed: nothing done
    assert again.attached == [] and again.unchanged == ["a", "b", "c"]
    assert not any(x.startswith("_x_b_") for x in before & _aliases(catalog)), "old run of b detached"


def test_removed_source_is_detached(catalog: ServingCatalog) -> None:
    ex = catalog.extracts_dir
    publish_extract(ex, "a", {"t": ints(1)})
    publish_extract(ex, "b", {"t": ints(2)})
    catalog.sync_sources(pub.published_runs(ex))
    pub.remove_source(ex, "b")
    report = catalog.sync_sources(pub.published_runs(ex))
    assert report.detached == ["b"]
    assert scalar(catalog, "SELECT count(*) FROM t") == 1
    assert [t.id for t in catalog.tables()] == ["a.t"]
    with pytest.raises(duckdb.CatalogException):
        catalog.execute_readonly("SELECT * FROM b.t")


@pytest.mark.parametrize("breakage", ["corrupt_duckdb", "missing_parquet", "no_meta"])
def test_broken_new_run_keeps_old_data_served(catalog: ServingCatalog, breakage: str) -> None:
    ex = catalog.extracts_dir
    good = publish_extract(ex, "crm", {"orders": ints(3)})
    catalog.sync_sources(pub.published_runs(ex))
    bad = publish_extract(ex, "crm", {"orders": ints(8)})
    if breakage == "corrupt_duckdb":
        (bad / "extract.duckdb").write_bytes(b"this is not a duckdb file" * 100)
    elif breakage == "missing_parquet":
        (bad / "data" / "orders.parquet").unlink()
    else:
        con = duckdb.connect(str(bad / "extract.duckdb"))
        con.execute("DROP TABLE _meta")
        con.close()
    report = catalog.sync_sources(pub.published_runs(ex))
    assert list(report.errors) == ["crm"] and report.attached == []
    assert bad.name in report.errors["crm"]
    expected = {"corrupt_duckdb": "cannot attach", "missing_parquet": "orders.parquet", "no_meta": "_meta"}
    assert expected[breakage] in report.errors["crm"]
    assert catalog.sources == {"crm": good.resolve()}
    assert scalar(catalog, "SELECT count(*) FROM crm.orders") == 3
    assert [t.status for t in catalog.tables()] == ["stale"]
    assert catalog.errors["crm"] == report.errors["crm"]
    assert catalog.sync_sources(pub.published_runs(ex)).errors == report.errors  # not retried, still reported
    publish_extract(ex, "crm", {"orders": ints(5)})
    assert catalog.sync_sources(pub.published_runs(ex)).errors == {}
    assert scalar(catalog, "SELECT count(*) FROM orders") == 5
    assert catalog.errors == {} and [t.status for t in catalog.tables()] == ["ok"]


def test_first_run_broken_is_reported_not_skipped(catalog: ServingCatalog) -> None:
    ex = catalog.extracts_dir
    bad = publish_extract(ex, "crm", {"orders": ints(3)})
    (bad / "data" / "orders.parquet").write_bytes(b"PAR1garbage")
    report = catalog.sync_sources(pub.published_runs(ex))
    assert "crm" in report.errors and catalog.tables() == []


def test_query_during_sync_sees_old_or_new_never_a_mix(catalog: ServingCatalog) -> None:
    ex = catalog.extracts_dir
    small = {"facts": ints(1000), "dims": ints(1000, offset=5)}
    large = {"facts": ints(25_000), "dims": ints(25_000, offset=5)}
    layout = {"dims": "base"}
    runs = [publish_extract(ex, "crm", small, layout)]
    catalog.sync_sources({"crm": runs[0]})

    def expected(tables: dict[str, pa.Table]) -> tuple[int, ...]:
        n = tables["facts"].num_rows
        return (n, n * (n - 1) // 2, n, n * (n - 1) // 2 + 5 * n)

    allowed = {expected(small), expected(large)}
    sql = (
        "SELECT (SELECT count(*) FROM crm.facts), (SELECT sum(id) FROM crm.facts), "
        "(SELECT count(*) FROM dims), (SELECT sum(id) FROM dims)"
    )
    stop = threading.Event()
    seen: list[tuple[int, ...]] = []
    errors: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                seen.append(tuple(catalog.execute_readonly(sql).to_pylist()[0].values()))
            except Exception as exc:  # noqa: BLE001 -- collected and asserted below
                errors.append(repr(exc))

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    kept = {0: runs[0]}
    for i in range(1, 41):  # publish alternating sizes
        kept[i] = publish_extract(ex, "crm", large if i % 2 else small, layout)
        report = catalog.sync_sources({"crm": kept[i]})
        assert report.attached == ["crm"], report.errors
    stop.set()
    for thread in threads:
        thread.join()
    assert errors == []
    assert seen and set(seen) <= allowed, set(seen) - allowed
    assert len(set(seen)) == 2, "readers should have seen both datasets"
    catalog.reap()
    assert len(_aliases(catalog)) == 1, "old runs are detached once no reader uses them"


def test_open_reader_delays_detach_of_the_run_it_may_use(catalog: ServingCatalog) -> None:
    ex = catalog.extracts_dir
    catalog.sync_sources({"crm": publish_extract(ex, "crm", {"t": ints(3)}, {"t": "base"})})
    with catalog.cursor() as cur:
        cur.execute("BEGIN TRANSACTION")
        assert cur.execute("SELECT count(*) FROM crm.t").fetchone()[0] == 3
        catalog.sync_sources({"crm": publish_extract(ex, "crm", {"t": ints(4)}, {"t": "base"})})
        assert cur.execute("SELECT count(*) FROM crm.t").fetchone()[0] == 3  # its snapshot
        assert len(_aliases(catalog)) == 2, "the old run stays attached while a reader may use it"
        assert catalog.reap() == []
        cur.execute("COMMIT")
    assert len(catalog.reap()) == 1
    assert scalar(catalog, "SELECT count(*) FROM t") == 4


def test_connection_is_locked_down(catalog: ServingCatalog, tmp_path: Path) -> None:
    ex = catalog.extracts_dir
    catalog.sync_sources({"crm": publish_extract(ex, "crm", {"t": ints(3)})})
    secret = tmp_path / "secret.csv"
    secret.write_text("a\n1\n")
    with catalog.cursor() as cur:
        for sql in (
            "SET enable_external_access = true",
            "SET lock_configuration = false",
            "SET allowed_directories = ['/']",
            "LOAD sqlite",
            "INSTALL httpfs",
        ):
            with pytest.raises(duckdb.Error):
                cur.execute(sql)
        with pytest.raises(duckdb.PermissionException):
            cur.execute(f"SELECT * FROM read_csv('{secret}')")
        settings = dict(cur.execute("SELECT name, value FROM duckdb_settings()").fetchall())
    assert settings["autoinstall_known_extensions"] == "false"
    assert settings["autoload_known_extensions"] == "false"
    assert settings["allow_community_extensions"] == "false"
    assert settings["threads"] == "2"
    # ... and still, a run published after the lock attaches and serves.
    catalog.sync_sources({"crm": publish_extract(ex, "crm", {"t": ints(4)})})
    assert scalar(catalog, "SELECT count(*) FROM crm.t") == 4


def test_execute_readonly_accepts_one_select_only(catalog: ServingCatalog) -> None:
    assert scalar(catalog, "SELECT 41 + 1") == 42
    assert catalog.execute_readonly("SELECT ? AS x", [7]).to_pylist() == [{"x": 7}]
    for sql in ("CREATE TABLE x (a INT)", "SELECT 1; SELECT 2", "DETACH memory", "COPY (SELECT 1) TO 'x.csv'"):
        with pytest.raises(QueryRefused):
            catalog.execute_readonly(sql)


def test_invalid_source_name_is_reported(catalog: ServingCatalog, tmp_path: Path) -> None:
    report = catalog.sync_sources({"Bad-Name": tmp_path})
    assert "invalid source name" in report.errors["Bad-Name"]
