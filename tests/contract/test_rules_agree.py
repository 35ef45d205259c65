"""The SDK, the server and the validator apply ONE set of name and secret rules.

`agnes.extract.names` (the SDK's `ExtractWriter` and the server's configure /
inbox checks) delegates to `contract_tests.names`; these tests feed a table of
tricky values to both sides and demand the same verdict, so neither can drift
again (the audit found 49 source names, 3 aliases, a token_env and a URL on
which they disagreed).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from contract_tests import spec, validate_extract
from contract_tests.fixtures import build_valid_extract

from agnes.errors import AgnesError
from agnes.extract import ExtractWriter, names
from agnes.services import source_options

from .helpers import BEFORE_NOW, check, codes, run_sql

SOURCE_NAMES = [
    "sample", "csv", "keboola", "data", "postgres", "in_house_2", "a" * 63,
    "values", "integer", "time", "timestamp", "row", "select", "order", "table", "main", "pg_catalog",
    "a" * 64, "_x", "1x", "Abc", "my-src", "",
]
ALIASES = ["kbc", "pg2", "bq_1", "_pg", "select", "order", "values", "time", "main", "Pg", "1pg", "p-g", ""]
TOKEN_ENVS = [
    None, "PG_PASSWORD", "KEBOOLA_STORAGE_TOKEN", "_X1",
    "AKIAIOSFODNN7EXAMPLE", "ghp_16C7e42F292c6912E7710c838347Ae178B4a", "ya29.secret-token", "pg_password",
    "PG-PASSWORD", "",
]
URLS = [
    None, "host=db dbname=shop user=agnes", "project=my-project", "md:my_db", "postgresql://db.example.com/shop",
    "md:shop?motherduck_token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", "https://h/x?access_key=abcDEF123456xyz",
    "host=db password=hunter2", "postgresql://agnes:hunter2@db/shop", "s3://b/k?aws_secret_access_key=zz",
    "https://api.example.com/v1?api_key=abc",
]
EXTENSIONS = ["postgres", "sqlite", "bigquery", "postgres; DROP", "Postgres", ""]
TABLE_NAMES = ["orders", "_private", "t_2024", "x" * 128, "_meta", "_remote_attach", "Orders", "1x", "a-b", "x" * 129]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_valid_extract(tmp_path_factory.mktemp("tpl") / "extract", remote=True, extracted_at=BEFORE_NOW)


def _copy(template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(template, tmp_path / "extract"))


def _sql(value: str | None) -> str:
    return "NULL" if value is None else "'" + value.replace("'", "''") + "'"


def _validator_refuses_attach_row(template: Path, tmp_path: Path, alias, extension, url, token_env) -> set[str]:
    extract = _copy(template, tmp_path)
    run_sql(extract, f"INSERT INTO _remote_attach VALUES ({_sql(alias)}, {_sql(extension)}, {_sql(url)}, "
                     f"{_sql(token_env)})")
    return {c for c in codes(check(extract, deep=False)) if c not in {"view_without_meta"}}


def _sdk_refuses_attach_row(alias, extension, url, token_env) -> bool:
    try:
        names.check_remote_attach(alias, extension, url, token_env)
    except ValueError:
        return True
    return False


@pytest.mark.parametrize("name", SOURCE_NAMES)
def test_source_names(template: Path, name: str) -> None:
    validator = bool({"source_name_invalid", "source_name_reserved"} & set(codes(check(template, source_name=name,
                                                                                      deep=False))))
    sdk = names.source_name_problem(name) is not None
    assert sdk == validator == (not names.is_valid_source_name(name)), name
    # The server's configure check (POST /api/admin/configure) applies the same rule.
    try:
        source_options.check_name(name)
        server = False
    except AgnesError as exc:
        assert exc.code == "invalid_source_name"
        server = True
    assert server == sdk, name


def test_keywords_the_server_used_to_refuse_alone_are_now_refused_by_the_validator() -> None:
    for kw in ("values", "integer", "time", "between", "varchar"):
        assert kw in spec.RESERVED_SOURCE_NAMES


@pytest.mark.parametrize("alias", ALIASES)
def test_aliases(template: Path, tmp_path: Path, alias: str) -> None:
    validator = "remote_attach_alias_invalid" in _validator_refuses_attach_row(
        template, tmp_path, alias, "postgres", "host=db", None
    )
    assert _sdk_refuses_attach_row(alias, "postgres", "host=db", None) == validator, alias


@pytest.mark.parametrize("token_env", TOKEN_ENVS)
def test_token_envs(template: Path, tmp_path: Path, token_env: str | None) -> None:
    found = _validator_refuses_attach_row(template, tmp_path, "pg2", "postgres", "host=db", token_env)
    validator = bool({"token_env_secret", "token_env_invalid"} & found)
    assert _sdk_refuses_attach_row("pg2", "postgres", "host=db", token_env) == validator, token_env


@pytest.mark.parametrize("url", URLS)
def test_urls(template: Path, tmp_path: Path, url: str | None) -> None:
    validator = "url_contains_secret" in _validator_refuses_attach_row(template, tmp_path, "pg2", "postgres", url, None)
    assert _sdk_refuses_attach_row("pg2", "postgres", url, None) == validator, url


@pytest.mark.parametrize("extension", EXTENSIONS)
def test_extensions(template: Path, tmp_path: Path, extension: str) -> None:
    found = _validator_refuses_attach_row(template, tmp_path, "pg2", extension, "host=db", None)
    validator = bool({"remote_attach_extension_missing", "remote_attach_extension_invalid"} & found)
    assert _sdk_refuses_attach_row("pg2", extension, "host=db", None) == validator, extension


@pytest.mark.parametrize("table", TABLE_NAMES)
def test_table_names(template: Path, tmp_path: Path, table: str) -> None:
    extract = _copy(template, tmp_path)
    run_sql(extract, f"INSERT INTO _meta VALUES ({_sql(table)}, NULL, 1, NULL, TIMESTAMP '{BEFORE_NOW}', 'local')")
    validator = "table_name_invalid" in codes(check(extract, deep=False))
    assert (names.table_name_problem(table) is not None) == validator, table


def test_the_writer_refuses_what_the_validator_refuses(tmp_path: Path) -> None:
    # End to end through ExtractWriter: every alias / token_env the SDK lets through validates.
    for i, (alias, token_env) in enumerate([("_pg", None), ("select", None), ("pg", "AKIAIOSFODNN7EXAMPLE")]):
        with ExtractWriter(tmp_path / f"x{i}") as w, pytest.raises(ValueError):
            w.declare_remote_attach(alias=alias, extension="sqlite", url="/tmp/x.db", token_env=token_env)


def test_normalised_names_pass_both(tmp_path: Path) -> None:
    for native in ("in.c-crm.orders", "Orders 2024", "2024 sales", "Überweisungen", "__x__"):
        table = names.normalize_table_name(native)
        assert names.table_name_problem(table) is None
        extract = build_valid_extract(tmp_path / table, extracted_at=BEFORE_NOW)
        run_sql(extract, f"CREATE TABLE {table} AS SELECT 1 AS a",
                f"INSERT INTO _meta VALUES ('{table}', NULL, 1, NULL, TIMESTAMP '{BEFORE_NOW}', 'local')")
        assert check(extract).ok, native


@pytest.mark.parametrize(
    "select_sql",
    ["SELECT * FROM other.main.t", "SELECT * FROM pg.main.t JOIN local_t USING (a)", "SELECT * FROM range(3)"],
    ids=["undeclared-alias", "local-table", "table-function"],
)
def test_the_writer_refuses_remote_views_the_validator_refuses(tmp_path: Path, select_sql: str) -> None:
    with ExtractWriter(tmp_path / "x") as w:
        w.declare_remote_attach(alias="pg", extension="sqlite", url="/tmp/x.db", token_env=None)
        for alias in ("pg", "other"):
            w.con.execute(f"ATTACH ':memory:' AS {alias}")
            w.con.execute(f"CREATE TABLE {alias}.main.t (a INTEGER)")
        w.con.execute("CREATE TEMP TABLE local_t (a INTEGER)")
        with pytest.raises(ValueError, match="may read only from declared aliases"):
            w.add_remote("r", alias="pg", select_sql=select_sql)
        w.add_remote("ok", alias="pg", select_sql="SELECT * FROM pg.main.t")
    report = validate_extract(tmp_path / "x")  # the real clock: the writer stamps extracted_at with now
    assert report.ok, report.to_text()
