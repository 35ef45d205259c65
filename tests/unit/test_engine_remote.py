"""Remote (pass-through) tables: SQL re-aiming, secrets from token_env, sqlite end to end.

Postgres end to end (a real server that checks the password from token_env): tests/integration/test_engine_remote.py.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import duckdb
import pytest

from agnes.engine import publish as pub
from agnes.engine.catalog import ServingCatalog
from agnes.engine.connection import ConnectionPolicy, load_extension
from agnes.engine.remote import (
    RemoteError,
    RemoteSpec,
    attach_statements,
    libpq_from_uri,
    rewrite_remote_query,
    view_query,
)

PG_URL = "host=127.0.0.1 port=5432 dbname=test user=postgres"
META_DDL = (
    "CREATE TABLE _meta (table_name VARCHAR NOT NULL, description VARCHAR, rows BIGINT, "
    "size_bytes BIGINT, extracted_at TIMESTAMP, query_mode VARCHAR DEFAULT 'local')"
)


def publish_remote(
    extracts: Path, source: str, ext_dir: Path, attach: tuple[str, str, str, str | None], views: dict[str, str]
) -> Path:
    """An extract whose tables are views over a remote alias (created while that alias is attached)."""
    alias, extension, url, token_env = attach
    staging = pub.new_staging_dir(extracts, source)
    con = duckdb.connect(str(staging / "extract.duckdb"), config={"extension_directory": str(ext_dir)})
    load_extension(con, extension)
    con.execute(f"ATTACH '{url}' AS {alias} (TYPE {extension}, READ_ONLY)")
    con.execute(META_DDL)
    con.execute("CREATE TABLE _remote_attach (alias VARCHAR, extension VARCHAR, url VARCHAR, token_env VARCHAR)")
    con.execute("INSERT INTO _remote_attach VALUES (?, ?, ?, ?)", [alias, extension, url, token_env])
    for name, query in views.items():
        con.execute(f"CREATE VIEW {name} AS {query}")
        con.execute("INSERT INTO _meta (table_name, query_mode) VALUES (?, 'remote')", [name])
    con.execute(f"DETACH {alias}")
    con.close()
    return pub.publish(extracts, source, staging).path


def sqlite_file(path: Path, rows: list[int]) -> Path:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE items (v INTEGER)")
    db.executemany("INSERT INTO items VALUES (?)", [(r,) for r in rows])
    db.commit()
    db.close()
    return path


@pytest.fixture
def ext_dir(tmp_path: Path) -> Path:
    return tmp_path / "duckdb-extensions"  # empty: extensions must come from the offline wheels


@pytest.fixture
def catalog(tmp_path: Path, ext_dir: Path):
    policy = ConnectionPolicy(threads=2, memory_limit="512MB", extension_directory=ext_dir)
    cat = ServingCatalog(tmp_path / "extracts", policy, environ={"AGNES_TEST_PG_PASSWORD": "s3cr'et"})
    yield cat
    cat.close()


def test_rewrite_re_aims_declared_aliases_only() -> None:
    con = duckdb.connect()
    aliases = {"pg": "_r_src_pg_1234"}
    sql = rewrite_remote_query(
        con,
        "WITH recent AS (SELECT * FROM pg.public.orders) SELECT * FROM recent JOIN pg.customers USING (id) "
        "WHERE id IN (SELECT id FROM pg.public.vip)",
        aliases,
    )
    assert "_r_src_pg_1234.public.orders" in sql and "_r_src_pg_1234.customers" in sql
    assert "_r_src_pg_1234.public.vip" in sql and " pg." not in sql
    for bad, why in (
        ("SELECT * FROM other.public.orders", "not in _remote_attach"),
        ("SELECT * FROM orders", "not under an alias"),
        ("SELECT * FROM read_parquet('/etc/x.parquet')", "table functions"),
        ("SELECT * FROM pg.t; SELECT 1", "exactly one"),
        ("DELETE FROM pg.t", "parse"),
    ):
        with pytest.raises(RemoteError, match=why):
            rewrite_remote_query(con, bad, aliases)


def test_view_query_strips_duckdbs_create_view_prefix() -> None:
    assert view_query("CREATE VIEW orders AS SELECT 1;", "orders") == "SELECT 1"
    assert view_query('CREATE VIEW "order" AS SELECT 1;', "order") == "SELECT 1"
    with pytest.raises(RemoteError, match="column aliases"):
        view_query("CREATE VIEW orders(a) AS SELECT 1;", "orders")


def test_postgres_secret_comes_from_token_env_never_the_attach_string() -> None:
    spec = RemoteSpec("crm", "pg", "postgres", PG_URL, "PG_PASS")
    secret_sql, attach_sql = attach_statements(spec, {"PG_PASS": "hunter'2"})
    assert "PASSWORD 'hunter''2'" in secret_sql and "TEMPORARY SECRET" in secret_sql
    assert "hunter" not in attach_sql and f'SECRET "{spec.catalog_alias}_secret"' in attach_sql
    with pytest.raises(RemoteError, match="PG_PASS"):
        attach_statements(spec, {})
    uri = RemoteSpec("crm", "pg", "postgres", "postgresql://bob@db.example:6543/sales?sslmode=require", "PG_PASS")
    libpq = "host=db.example port=6543 user=bob dbname=sales sslmode=require"
    assert libpq in attach_statements(uri, {"PG_PASS": "x"})[1]
    with pytest.raises(RemoteError, match="must not contain a password"):
        libpq_from_uri("postgresql://bob:pw@db/sales")
    (plain,) = attach_statements(RemoteSpec("crm", "lite", "sqlite", "/data/x.db", None), {})
    assert plain.startswith("ATTACH '/data/x.db'") and "READ_ONLY" in plain
    with pytest.raises(RemoteError, match="does not know how to pass a secret"):
        attach_statements(RemoteSpec("crm", "bq", "bigquery", "project=x", "BQ_TOKEN"), {"BQ_TOKEN": "t"})


def test_sqlite_remote_tables_with_the_same_alias_in_two_sources(
    catalog: ServingCatalog, tmp_path: Path, ext_dir: Path
) -> None:
    ex = catalog.extracts_dir
    first = sqlite_file(tmp_path / "first.db", [1, 2, 3])
    second = sqlite_file(tmp_path / "second.db", [10, 20])
    publish_remote(ex, "one", ext_dir, ("lite", "sqlite", str(first), None), {"items": "SELECT * FROM lite.items"})
    report = catalog.sync_sources(pub.published_runs(ex))
    assert report.attached == ["one"] and report.errors == {}
    assert catalog.execute_readonly("SELECT sum(v) FROM items").column(0)[0].as_py() == 6
    views = {"items": "SELECT v FROM lite.main.items"}
    publish_remote(ex, "two", ext_dir, ("lite", "sqlite", str(second), None), views)
    report = catalog.sync_sources(pub.published_runs(ex))
    assert report.attached == ["two"] and report.errors == {}
    assert catalog.execute_readonly("SELECT sum(v) FROM two.items").column(0)[0].as_py() == 30
    assert catalog.execute_readonly("SELECT sum(v) FROM one.items").column(0)[0].as_py() == 6
    assert catalog.collisions == {"items": ["one", "two"]}
    (table,) = [t for t in catalog.tables() if t.id == "two.items"]
    assert table.query_mode == "remote" and table.columns == [("v", "BIGINT")]
    assert list(ext_dir.rglob("sqlite_scanner.duckdb_extension")), "installed from the offline wheel"


def test_remote_view_reading_an_undeclared_alias_is_refused(
    catalog: ServingCatalog, tmp_path: Path, ext_dir: Path
) -> None:
    db = sqlite_file(tmp_path / "x.db", [1])
    staging = pub.new_staging_dir(catalog.extracts_dir, "sneaky")
    con = duckdb.connect(str(staging / "extract.duckdb"))
    con.execute(META_DDL)
    con.execute("INSERT INTO _meta (table_name, query_mode) VALUES ('items', 'remote')")
    con.execute("CREATE TABLE _remote_attach (alias VARCHAR, extension VARCHAR, url VARCHAR, token_env VARCHAR)")
    con.execute("INSERT INTO _remote_attach VALUES ('lite', 'sqlite', ?, NULL)", [str(db)])
    con.execute("CREATE TABLE secrets_of_extract AS SELECT 1 AS x")
    con.execute("CREATE VIEW items AS SELECT * FROM secrets_of_extract")
    con.close()
    pub.publish(catalog.extracts_dir, "sneaky", staging)
    report = catalog.sync_sources(pub.published_runs(catalog.extracts_dir))
    assert "not under an alias declared in _remote_attach" in report.errors["sneaky"]
    assert catalog.tables() == []


def test_rebuild_keeps_old_runs_of_broken_sources_and_open_readers_working(
    catalog: ServingCatalog, tmp_path: Path, ext_dir: Path
) -> None:
    ex = catalog.extracts_dir
    staging = pub.new_staging_dir(ex, "local")
    con = duckdb.connect(str(staging / "extract.duckdb"))
    con.execute(META_DDL)
    con.execute("INSERT INTO _meta (table_name) VALUES ('things')")
    con.execute("CREATE TABLE things AS SELECT 1 AS x")
    con.close()
    good = pub.publish(ex, "local", staging).path
    catalog.sync_sources(pub.published_runs(ex))

    broken = pub.new_staging_dir(ex, "local")
    (broken / "extract.duckdb").write_bytes(b"garbage" * 1000)
    pub.publish(ex, "local", broken)
    db = sqlite_file(tmp_path / "x.db", [5])
    publish_remote(ex, "lite", ext_dir, ("lite", "sqlite", str(db), None), {"items": "SELECT * FROM lite.items"})
    old_generation = catalog._gen
    with catalog.cursor() as old_reader:
        report = catalog.sync_sources(pub.published_runs(ex))  # sqlite not loaded yet: rebuild
        assert report.rebuilt and report.attached == ["lite"] and list(report.errors) == ["local"]
        assert old_reader.execute("SELECT x FROM local.things").fetchone() == (1,)  # old generation still open
        assert not old_generation._closed
    assert old_generation._closed, "the replaced generation closes when its last reader leaves"
    assert catalog.sources["local"] == good.resolve()
    assert catalog.execute_readonly("SELECT x FROM things").column(0)[0].as_py() == 1
    assert catalog.execute_readonly("SELECT v FROM items").column(0)[0].as_py() == 5
    assert {t.id: t.status for t in catalog.tables()} == {"lite.items": "ok", "local.things": "stale"}
