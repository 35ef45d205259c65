"""Remote tables: `_remote_attach`, its secrets, and what remote views may read."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from contract_tests.checks.remote import view_query, view_refs
from contract_tests.checks.secrets import looks_like_secret, mask

from .helpers import check, codes, only, run_sql


def replace_remote_view(extract: Path, select_sql: str, aliases: tuple[str, ...] = ("pg",)) -> None:
    """Recreate `remote_orders`; DuckDB binds views on creation, so stand-ins are attached meanwhile."""
    con = duckdb.connect(str(extract / "extract.duckdb"))
    try:
        for alias in aliases:
            con.execute(f"ATTACH ':memory:' AS {alias}")
            con.execute(f"CREATE SCHEMA {alias}.public")
            con.execute(f"CREATE TABLE {alias}.public.orders (id INTEGER, amount DOUBLE)")
            con.execute(f"CREATE TABLE {alias}.main.orders (id INTEGER, amount DOUBLE)")
        con.execute(f"CREATE OR REPLACE VIEW remote_orders AS {select_sql}")
        for alias in aliases:
            con.execute(f"DETACH {alias}")
    finally:
        con.close()


def test_remote_table_without_remote_attach(remote_extract: Path) -> None:
    run_sql(remote_extract, "DROP TABLE _remote_attach")
    v = only(check(remote_extract), "remote_attach_missing")
    assert "spec/remote_attach.sql" in v.fix


def test_remote_attach_without_rows(remote_extract: Path) -> None:
    run_sql(remote_extract, "DELETE FROM _remote_attach")
    only(check(remote_extract), "remote_attach_empty")


def test_remote_attach_is_optional_without_remote_tables(extract: Path) -> None:
    assert check(extract).ok


def test_remote_row_without_a_view(remote_extract: Path) -> None:
    run_sql(remote_extract, "DROP VIEW remote_orders")
    v = only(check(remote_extract), "remote_view_missing")
    assert v.table == "remote_orders"


def test_remote_view_reading_an_undeclared_alias(remote_extract: Path) -> None:
    replace_remote_view(
        remote_extract,
        "SELECT o.id FROM pg.public.orders o JOIN kbc.main.orders k USING (id)",
        aliases=("pg", "kbc"),
    )
    v = only(check(remote_extract), "remote_alias_undeclared")
    assert "'kbc'" in v.message and "kbc.main.orders" in v.message
    assert "INSERT INTO _remote_attach" in v.fix


def test_undeclared_alias_hidden_in_a_subquery(remote_extract: Path) -> None:
    replace_remote_view(
        remote_extract,
        "SELECT id FROM pg.public.orders WHERE id IN (SELECT id FROM other.public.orders)",
        aliases=("pg", "other"),
    )
    assert codes(check(remote_extract)) == ["remote_alias_undeclared"]


@pytest.mark.parametrize(
    "select_sql",
    [
        "WITH o AS (SELECT * FROM pg.public.orders) SELECT id FROM o",
        "SELECT id FROM pg.orders",  # alias.table, default schema
        'SELECT id FROM "PG"."public"."orders"',  # identifiers are case-insensitive
    ],
    ids=["cte", "two-part", "quoted"],
)
def test_declared_alias_in_other_spellings_is_fine(remote_extract: Path, select_sql: str) -> None:
    replace_remote_view(remote_extract, select_sql)
    report = check(remote_extract)
    assert report.ok, report.to_text()


def test_remote_view_reading_a_local_table(remote_extract: Path) -> None:
    replace_remote_view(remote_extract, "SELECT o.id FROM pg.public.orders o JOIN customers c ON c.id = o.id")
    v = only(check(remote_extract), "remote_view_bad_reference")
    assert "customers" in v.message


def test_remote_view_reading_a_file(remote_extract: Path, tmp_path: Path) -> None:
    f = tmp_path / "x.csv"
    f.write_text("id\n1\n")
    replace_remote_view(remote_extract, f"SELECT id FROM read_csv('{f.as_posix()}')")
    v = only(check(remote_extract), "remote_view_bad_reference")
    assert "read_csv" in v.message and "table function" in v.message


def test_alias_query_functions_count_as_the_alias() -> None:
    con = duckdb.connect()
    ast = view_query(con, "CREATE VIEW v AS SELECT * FROM postgres_query('pg', 'SELECT 1') JOIN kbc.t USING (a);")
    refs = view_refs(ast)
    assert [(r.alias, r.kind) for r in refs] == [("pg", "table"), ("kbc", "table")]
    assert view_query(con, "CREATE VIEW v AS this is not sql") is None


@pytest.mark.parametrize(
    ("ddl", "code"),
    [
        ("alias VARCHAR, extension VARCHAR, url VARCHAR, token_env INTEGER", "remote_attach_column_type"),
        ("alias VARCHAR, extension VARCHAR, url VARCHAR", "remote_attach_column_missing"),
        (
            "alias VARCHAR, extension VARCHAR, url VARCHAR, token_env VARCHAR, token VARCHAR",
            "remote_attach_column_extra",
        ),
        ("alias VARCHAR, extension VARCHAR, uri VARCHAR, token_env VARCHAR", "remote_attach_column_misnamed"),
    ],
    ids=["type", "missing", "extra", "misnamed"],
)
def test_remote_attach_columns(remote_extract: Path, ddl: str, code: str) -> None:
    run_sql(
        remote_extract,
        "DROP TABLE _remote_attach",
        f"CREATE TABLE _remote_attach ({ddl})",
        "INSERT INTO _remote_attach (alias, extension) VALUES ('pg', 'postgres')",
    )
    v = only(check(remote_extract), code)
    assert v.table == "_remote_attach"


@pytest.mark.parametrize(
    ("alias_sql", "expected"),
    [
        ("INSERT INTO _remote_attach VALUES ('pg', 'postgres', NULL, NULL)", ["remote_attach_alias_invalid"]),
        # The view still reads pg, which is no longer declared.
        ("UPDATE _remote_attach SET alias = 'main'", ["remote_attach_alias_invalid", "remote_alias_undeclared"]),
    ],
    ids=["duplicate", "reserved"],
)
def test_bad_alias(remote_extract: Path, alias_sql: str, expected: list[str]) -> None:
    run_sql(remote_extract, alias_sql)
    assert codes(check(remote_extract)) == expected


def test_missing_extension(remote_extract: Path) -> None:
    run_sql(remote_extract, "UPDATE _remote_attach SET extension = NULL")
    only(check(remote_extract), "remote_attach_extension_missing")


SECRETS = [
    "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
    "AKIAIOSFODNN7EXAMPLE",
    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "p@ss:w0rd/with+base64==",
]


@pytest.mark.parametrize("secret", SECRETS)
def test_token_env_holding_a_secret(remote_extract: Path, secret: str) -> None:
    run_sql(remote_extract, f"UPDATE _remote_attach SET token_env = '{secret}'")
    report = check(remote_extract)
    v = only(report, "token_env_secret")
    assert secret not in json.dumps(report.to_dict())
    assert secret not in report.to_text()
    assert mask(secret) in v.message
    assert "rotate" in v.fix


@pytest.mark.parametrize("name", ["pg_password", "PG-PASSWORD", ""])
def test_token_env_not_an_env_var_name(remote_extract: Path, name: str) -> None:
    run_sql(remote_extract, f"UPDATE _remote_attach SET token_env = '{name}'")
    v = only(check(remote_extract), "token_env_invalid")
    assert "^[A-Z_][A-Z0-9_]*$" in v.message


@pytest.mark.parametrize("name", ["PG_PASSWORD", "KEBOOLA_STORAGE_TOKEN", "_X1", None])
def test_token_env_names_that_are_fine(remote_extract: Path, name: str | None) -> None:
    value = "NULL" if name is None else f"'{name}'"
    run_sql(remote_extract, f"UPDATE _remote_attach SET token_env = {value}")
    assert check(remote_extract).ok


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("postgresql://analyst:Tr0ub4dor&3@db.example.com:5432/shop", "Tr0ub4dor&3"),
        ("host=db.example.com dbname=shop user=analyst password=Tr0ub4dor3", "Tr0ub4dor3"),
        ("https://api.example.com/v1?project=7&api_key=abcDEF123456", "abcDEF123456"),
    ],
    ids=["userinfo", "libpq-keywords", "query-param"],
)
def test_url_with_a_secret(remote_extract: Path, url: str, secret: str) -> None:
    run_sql(remote_extract, f"UPDATE _remote_attach SET url = '{url}'")
    report = check(remote_extract)
    v = only(report, "url_contains_secret")
    assert "***" in v.message
    assert secret not in json.dumps(report.to_dict()) and secret not in report.to_text()


def test_secret_heuristics_spare_ordinary_names() -> None:
    for name in ("KEBOOLA_STORAGE_TOKEN", "PG_PASSWORD", "BIGQUERY_CREDENTIALS_JSON", "A"):
        assert not looks_like_secret(name), name
    for secret in SECRETS:
        assert looks_like_secret(secret) or not secret.replace("_", "").isalnum(), secret


def test_missing_extension_is_one_violation_and_a_bad_one_another(remote_extract: Path) -> None:
    run_sql(remote_extract, "UPDATE _remote_attach SET extension = 'postgres; DROP'")
    v = only(check(remote_extract), "remote_attach_extension_invalid")
    assert "'postgres'" in v.fix


def test_url_secret_in_a_parameter_with_a_prefix(remote_extract: Path) -> None:
    # `motherduck_token=` / `aws_secret_access_key=`: the SDK refused these, the validator missed them.
    secret = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    run_sql(remote_extract, f"UPDATE _remote_attach SET url = 'md:shop?motherduck_token={secret}'")
    report = check(remote_extract)
    v = only(report, "url_contains_secret")
    assert "motherduck_token=***" in v.message and secret not in report.to_text()


def test_remote_view_that_cannot_be_parsed(remote_extract: Path) -> None:
    # A view written with a raised max_expression_depth parses for its author but not for the pinned
    # DuckDB's defaults (which the locked-down validator cannot change): its references cannot be checked.
    con = duckdb.connect(str(remote_extract / "extract.duckdb"))
    try:
        con.execute("SET max_expression_depth = 100000")
        con.execute("ATTACH ':memory:' AS pg")
        con.execute("CREATE SCHEMA pg.public")
        con.execute("CREATE TABLE pg.public.orders (id INTEGER, amount DOUBLE)")
        deep = "id" + " + 1" * 1500
        con.execute(f"CREATE OR REPLACE VIEW remote_orders AS SELECT {deep} AS id, amount FROM pg.public.orders")
        con.execute("DETACH pg")
    finally:
        con.close()
    v = only(check(remote_extract), "remote_view_unparseable")
    assert v.table == "remote_orders" and "CREATE OR REPLACE VIEW" in v.fix


def test_remote_attach_that_is_a_view(remote_extract: Path) -> None:
    run_sql(
        remote_extract,
        "DROP TABLE _remote_attach",
        "CREATE VIEW _remote_attach AS SELECT 'pg' AS alias, 'postgres' AS extension, NULL AS url, "
        "NULL AS token_env",
    )
    v = only(check(remote_extract), "remote_attach_not_a_table")
    assert v.table == "_remote_attach" and "remote_attach.sql" in v.fix


def _add_view(extract: Path, name: str, select_sql: str) -> None:
    con = duckdb.connect(str(extract / "extract.duckdb"))
    try:
        con.execute("ATTACH ':memory:' AS pg")
        con.execute("CREATE SCHEMA pg.public")
        con.execute("CREATE TABLE pg.public.secret_tbl (a INTEGER)")
        con.execute(f"CREATE VIEW {name} AS {select_sql}")
        con.execute("DETACH pg")
    finally:
        con.close()


@pytest.mark.parametrize(
    "select_sql",
    [
        "SELECT * FROM pg.public.secret_tbl",
        "SELECT a FROM (SELECT * FROM pg.public.secret_tbl) s",
        "WITH x AS (SELECT a FROM pg.public.secret_tbl) SELECT * FROM x",
        "SELECT * FROM orders_local_helper JOIN pg.public.secret_tbl ON true",
    ],
    ids=["plain", "subquery", "cte", "join"],
)
def test_view_reading_a_remote_alias_without_meta_row(remote_extract: Path, select_sql: str) -> None:
    if "orders_local_helper" in select_sql:
        run_sql(remote_extract, "CREATE VIEW orders_local_helper AS SELECT 1 AS n")
    _add_view(remote_extract, "forgotten", select_sql)
    v = only(check(remote_extract), "view_without_meta")
    assert v.table == "forgotten" and "'pg'" in v.message
    assert "'remote'" in v.fix and "DROP VIEW" in v.fix


def test_helper_views_not_touching_a_remote_alias_stay_allowed(remote_extract: Path) -> None:
    run_sql(remote_extract, "CREATE VIEW helper AS SELECT 42 AS answer", "CREATE VIEW big_customers AS "
            "SELECT * FROM customers WHERE id > 10")
    assert check(remote_extract).ok
