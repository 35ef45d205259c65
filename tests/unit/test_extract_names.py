"""Source/table names and remote-attach declarations (design.md "Names, time, visibility")."""

from __future__ import annotations

import pytest

from agnes.extract.names import (
    SOURCE_NAME_RE,
    TABLE_NAME_RE,
    check_remote_attach,
    duckdb_keywords,
    is_valid_source_name,
    normalize_table_name,
    source_name_problem,
    table_name_problem,
    validate_table_name,
)


@pytest.mark.parametrize(
    ("native", "expected"),
    [
        ("in.c-crm.orders", "in_c_crm_orders"),
        ("Orders 2024", "orders_2024"),
        ("orders", "orders"),
        ("2024 sales", "t_2024_sales"),
        ("123", "t_123"),
        ("a---b...c", "a_b_c"),
        ("__weird__name__", "weird_name"),
        ("Überweisungen", "uberweisungen"),
        ("Café Crème", "cafe_creme"),
        ("CamelCaseTable", "camelcasetable"),
        ("tab\tand\nnewline", "tab_and_newline"),
    ],
)
def test_normalize_table_name(native: str, expected: str) -> None:
    assert normalize_table_name(native) == expected
    assert TABLE_NAME_RE.match(expected)


def test_normalize_truncates_to_128_without_trailing_underscore() -> None:
    name = normalize_table_name("x" * 127 + "-yyyy")
    assert len(name) <= 128 and TABLE_NAME_RE.match(name) and not name.endswith("_")
    assert normalize_table_name("a" * 500) == "a" * 128


@pytest.mark.parametrize("native", ["", "???", "---", "日本語"])
def test_normalize_refuses_names_without_letters(native: str) -> None:
    with pytest.raises(ValueError, match="cannot derive a table name"):
        normalize_table_name(native)


def test_normalized_names_are_always_valid() -> None:
    for native in ["in.c-main.x", "9lives", "A B C", "x" * 300, "ab__", "_x", "Ärger 2.0"]:
        assert table_name_problem(normalize_table_name(native)) is None


@pytest.mark.parametrize("name", ["orders", "_private", "a", "in_c_crm_orders", "x" * 128, "t_2024"])
def test_valid_table_names(name: str) -> None:
    assert validate_table_name(name) == name


@pytest.mark.parametrize("name", ["Orders", "1abc", "a-b", "a.b", "", "x" * 129, "naïve", "a b"])
def test_invalid_table_names_say_how_to_fix(name: str) -> None:
    problem = table_name_problem(name)
    assert problem and "^[a-z_][a-z0-9_]{0,127}$" in problem
    if name and any(c.isalnum() for c in name):
        assert "normalize_table_name" in problem
    with pytest.raises(ValueError):
        validate_table_name(name)


@pytest.mark.parametrize("name", ["_meta", "_remote_attach"])
def test_contract_tables_are_reserved(name: str) -> None:
    assert "reserved" in table_name_problem(name)


@pytest.mark.parametrize("name", ["sample", "csv", "keboola", "bigquery", "jira", "postgres", "data", "a", "x" * 63])
def test_valid_source_names(name: str) -> None:
    assert is_valid_source_name(name), source_name_problem(name)


@pytest.mark.parametrize(
    "name",
    ["main", "system", "temp", "memory", "information_schema", "pg_catalog", "select", "order", "table",
     "1abc", "_x", "Abc", "a-b", "", "x" * 64],
)
def test_invalid_source_names(name: str) -> None:
    assert not is_valid_source_name(name)
    assert source_name_problem(name)


def test_keywords_come_from_duckdb() -> None:
    kws = duckdb_keywords()
    assert {"select", "from", "order", "join"} <= kws
    assert "sample" not in kws  # unreserved keywords are fine as names
    assert SOURCE_NAME_RE.pattern == r"^[a-z][a-z0-9_]{0,62}$"


def test_remote_attach_accepts_a_clean_declaration() -> None:
    check_remote_attach("pg", "postgres", "host=db port=5432 dbname=shop user=agnes", "PG_PASSWORD")
    check_remote_attach("kbc", "bigquery", "project=my-project", None)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"alias": "Bad-Alias"}, "alias"),
        ({"alias": "main"}, "alias"),
        ({"extension": "postgres; DROP"}, "extension"),
        ({"url": "host=db password=hunter2"}, "secret"),
        ({"url": "postgresql://agnes:hunter2@db/shop"}, "secret"),
        ({"token_env": "hunter2-is-my-password"}, "NAME of an environment variable"),
        ({"token_env": "sk_live_abc123"}, "NAME of an environment variable"),
    ],
)
def test_remote_attach_refuses(kwargs: dict, fragment: str) -> None:
    args = {"alias": "pg", "extension": "postgres", "url": "host=db dbname=shop", "token_env": "PG_PASSWORD"}
    args.update(kwargs)
    with pytest.raises(ValueError, match=fragment):
        check_remote_attach(**args)
