"""Remote (pass-through) postgres tables with `token_env`, against a real server that checks passwords.

The test starts its OWN PostgreSQL cluster (scram-sha-256 for every connection, see pg_cluster.py):
against the usual trust-auth test server a wrong or missing password would go unnoticed. A role with
a password reads one table; the serving catalog gets that password only from the env var named by
`_remote_attach.token_env`. With `CI` set, a cluster that cannot start fails these tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from agnes.engine import publish as pub
from agnes.engine.catalog import ServingCatalog
from agnes.engine.connection import ConnectionPolicy, load_extension, sql_literal
from agnes.engine.remote import libpq_from_uri
from tests.integration.pg_cluster import PgCluster, start_cluster
from tests.unit.test_engine_remote import META_DDL

READER = "agnes_reader"
READER_PASSWORD = "r3ad'er pass"  # a quote and a space: the secret must be escaped, not pasted
TOKEN_ENV = "AGNES_TEST_PG_PASSWORD"


@pytest.fixture(scope="module")
def pg() -> Iterator[PgCluster]:
    yield from start_cluster()


@pytest.fixture(scope="module")
def reader_url(pg: PgCluster) -> str:
    """libpq url of a role WITH PASSWORD that may read shop.public.orders (5 rows, ids 0..4)."""
    rules = pg.hba_rules()
    assert rules and all(rule[-1] == "scram-sha-256" for rule in rules), f"password auth not enforced: {rules}"
    pg.psql(f"CREATE ROLE {READER} LOGIN PASSWORD {sql_literal(READER_PASSWORD)}")
    pg.psql("CREATE DATABASE shop")
    pg.psql("CREATE TABLE orders AS SELECT g AS id, 'p' || g AS label FROM generate_series(0, 4) AS g; "
            f"GRANT SELECT ON orders TO {READER}", database="shop")
    return f"host=127.0.0.1 port={pg.port} dbname=shop user={READER}"


@pytest.fixture
def ext_dir(tmp_path: Path) -> Path:
    return tmp_path / "duckdb-extensions"  # empty: extensions must come from the offline wheels


def publish_pg(extracts: Path, source: str, ext_dir: Path, url: str, views: dict[str, str]) -> Path:
    """A Tier-B-like extract: views over alias `pg`; `_remote_attach` holds the url (no password) and
    token_env. The connector itself needs the password to create the views (DuckDB binds them)."""
    staging = pub.new_staging_dir(extracts, source)
    con = duckdb.connect(str(staging / "extract.duckdb"), config={"extension_directory": str(ext_dir)})
    load_extension(con, "postgres")
    con.execute(f"CREATE TEMPORARY SECRET build_pw (TYPE postgres, PASSWORD {sql_literal(READER_PASSWORD)})")
    build_url = libpq_from_uri(url) if url.startswith("postgresql://") else url  # with a SECRET, libpq form only
    con.execute(f"ATTACH {sql_literal(build_url)} AS pg (TYPE postgres, READ_ONLY, SECRET build_pw)")
    con.execute(META_DDL)
    con.execute("CREATE TABLE _remote_attach (alias VARCHAR, extension VARCHAR, url VARCHAR, token_env VARCHAR)")
    con.execute("INSERT INTO _remote_attach VALUES ('pg', 'postgres', ?, ?)", [url, TOKEN_ENV])
    for name, query in views.items():
        con.execute(f"CREATE VIEW {name} AS {query}")
        con.execute("INSERT INTO _meta (table_name, query_mode) VALUES (?, 'remote')", [name])
    con.execute("DETACH pg")
    con.close()
    return pub.publish(extracts, source, staging).path


def publish_local(extracts: Path) -> None:
    staging = pub.new_staging_dir(extracts, "local")
    con = duckdb.connect(str(staging / "extract.duckdb"))
    con.execute(META_DDL)
    con.execute("INSERT INTO _meta (table_name) VALUES ('things')")
    con.execute("CREATE TABLE things AS SELECT 1 AS x")
    con.close()
    pub.publish(extracts, "local", staging)


def serving(tmp_path: Path, ext_dir: Path, environ: dict[str, str]) -> ServingCatalog:
    return ServingCatalog(tmp_path / "extracts", ConnectionPolicy(threads=2, memory_limit="512MB",
                                                                  extension_directory=ext_dir), environ=environ)


def test_the_password_from_token_env_reads_the_remote_table(tmp_path: Path, ext_dir: Path, reader_url: str) -> None:
    cat = serving(tmp_path, ext_dir, {TOKEN_ENV: READER_PASSWORD})
    try:
        ex = cat.extracts_dir
        publish_local(ex)
        assert cat.sync_sources(pub.published_runs(ex)).errors == {}  # the catalog is now live and locked

        publish_pg(ex, "warehouse", ext_dir, reader_url, {"orders": "SELECT id, label FROM pg.public.orders"})
        report = cat.sync_sources(pub.published_runs(ex))
        assert report.errors == {} and report.attached == ["warehouse"]
        assert report.rebuilt, "a locked DuckDB cannot ATTACH postgres: a fresh generation is built"
        result = cat.execute_readonly("SELECT count(*), sum(id) FROM warehouse.orders").to_pylist()[0]
        assert list(result.values()) == [5, 10]
        assert cat.execute_readonly("SELECT count(*) FROM orders").column(0)[0].as_py() == 5
        assert cat.execute_readonly("SELECT x FROM local.things").column(0)[0].as_py() == 1
        (table,) = [t for t in cat.tables() if t.id == "warehouse.orders"]
        assert table.query_mode == "remote"
        paths = cat.execute_readonly("SELECT coalesce(path, '') AS p FROM duckdb_databases()").column(0).to_pylist()
        assert not any("r3ad" in p for p in paths), "the secret never appears in the attach string"
        secrets = cat.execute_readonly("SELECT secret_string FROM duckdb_secrets()").column(0).to_pylist()
        assert len(secrets) == 1 and "password=redacted" in secrets[0] and "r3ad" not in secrets[0]

        views = {"orders": "SELECT id, label FROM pg.public.orders WHERE id < 3"}
        publish_pg(ex, "warehouse", ext_dir, reader_url, views)  # same _remote_attach: reuse the attachment
        report = cat.sync_sources(pub.published_runs(ex))
        assert report.attached == ["warehouse"] and not report.rebuilt and report.errors == {}
        assert cat.execute_readonly("SELECT count(*) FROM warehouse.orders").column(0)[0].as_py() == 3
    finally:
        cat.close()


def test_a_postgres_uri_works_with_the_password_from_token_env(tmp_path: Path, ext_dir: Path, pg: PgCluster,
                                                                reader_url: str) -> None:
    uri = f"postgresql://{READER}@127.0.0.1:{pg.port}/shop"
    cat = serving(tmp_path, ext_dir, {TOKEN_ENV: READER_PASSWORD})
    try:
        publish_pg(cat.extracts_dir, "warehouse", ext_dir, uri, {"orders": "SELECT id FROM pg.public.orders"})
        assert cat.sync_sources(pub.published_runs(cat.extracts_dir)).errors == {}
        assert cat.execute_readonly("SELECT count(*) FROM warehouse.orders").column(0)[0].as_py() == 5
    finally:
        cat.close()


def test_a_wrong_password_in_token_env_is_a_clear_error(tmp_path: Path, ext_dir: Path, reader_url: str) -> None:
    wrong = "not-the-password-" + "x9"
    cat = serving(tmp_path, ext_dir, {TOKEN_ENV: wrong})
    try:
        publish_local(cat.extracts_dir)
        publish_pg(cat.extracts_dir, "warehouse", ext_dir, reader_url, {"orders": "SELECT id FROM pg.public.orders"})
        report = cat.sync_sources(pub.published_runs(cat.extracts_dir))
        message = report.errors["warehouse"]
        assert f'password authentication failed for user "{READER}"' in message, message
        assert "alias 'pg'" in message and "warehouse" in message, message
        assert f"environment variable {TOKEN_ENV}" in message, "the error says which variable to fix"
        assert wrong not in message, "the secret is never echoed"
        assert "warehouse" not in cat.sources and [t.id for t in cat.tables()] == ["local.things"]
        assert cat.execute_readonly("SELECT x FROM local.things").column(0)[0].as_py() == 1  # others still served
    finally:
        cat.close()


def test_a_missing_token_env_is_a_clear_error(tmp_path: Path, ext_dir: Path, reader_url: str) -> None:
    cat = serving(tmp_path, ext_dir, {})
    try:
        publish_pg(cat.extracts_dir, "warehouse", ext_dir, reader_url, {"orders": "SELECT * FROM pg.orders"})
        report = cat.sync_sources(pub.published_runs(cat.extracts_dir))
        assert TOKEN_ENV in report.errors["warehouse"] and "not set" in report.errors["warehouse"]
    finally:
        cat.close()
