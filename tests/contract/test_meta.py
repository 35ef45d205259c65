"""`_meta`: its frozen shape and the rules for each row; source names."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from .helpers import BEFORE_NOW, NOW, check, codes, only, run_sql


def add_parquet_table(extract: Path, name: str, rows: int = 2) -> None:
    """A correct parquet table under `name`, so only the name itself can be wrong."""
    pq.write_table(pa.table({"id": list(range(rows))}), extract / "data" / f"{name}.parquet")
    run_sql(
        extract,
        f"INSERT INTO _meta VALUES ('{name}', NULL, {rows}, NULL, TIMESTAMP '{BEFORE_NOW}', 'local')",
    )


def test_missing_meta(extract: Path) -> None:
    run_sql(extract, "DROP TABLE _meta")
    v = only(check(extract), "meta_missing")
    assert "spec/meta.sql" in v.fix


def test_meta_as_a_view_is_not_read(extract: Path) -> None:
    run_sql(
        extract,
        "CREATE TABLE real_meta AS FROM _meta",
        "DROP TABLE _meta",
        "CREATE VIEW _meta AS FROM real_meta",
    )
    only(check(extract), "meta_not_a_table")


def test_missing_meta_column(extract: Path) -> None:
    run_sql(extract, "ALTER TABLE _meta DROP COLUMN size_bytes")
    v = only(check(extract), "meta_column_missing")
    assert "size_bytes" in v.message
    assert "ALTER TABLE _meta ADD COLUMN size_bytes BIGINT" in v.fix


def test_extra_meta_column_is_a_violation(extract: Path) -> None:
    run_sql(extract, "ALTER TABLE _meta ADD COLUMN owner VARCHAR")
    v = only(check(extract), "meta_column_extra")
    assert "owner" in v.message and "frozen" in v.message
    assert 'DROP COLUMN "owner"' in v.fix


@pytest.mark.parametrize(
    ("old", "new"),
    [("extracted_at", "extractedAt"), ("rows", "n"), ("query_mode", "QUERY_MODE")],
    ids=["close-spelling", "same-position", "case"],
)
def test_misnamed_meta_column(extract: Path, old: str, new: str) -> None:
    run_sql(extract, f'ALTER TABLE _meta RENAME COLUMN {old} TO "{new}"')
    v = only(check(extract), "meta_column_misnamed")
    assert f'RENAME COLUMN "{new}" TO {old}' in v.fix


def test_mistyped_meta_column(extract: Path) -> None:
    run_sql(extract, "ALTER TABLE _meta ALTER rows TYPE VARCHAR")
    v = only(check(extract), "meta_column_type")
    assert v.table == "_meta"
    assert v.message == "_meta.rows is VARCHAR, expected BIGINT"
    assert v.fix == "ALTER TABLE _meta ALTER rows TYPE BIGINT (or CAST(rows AS BIGINT) when creating it)"


def test_extracted_at_with_time_zone_is_mistyped(extract: Path) -> None:
    run_sql(extract, "ALTER TABLE _meta ALTER extracted_at TYPE TIMESTAMPTZ")
    v = only(check(extract), "meta_column_type")
    assert "TIMESTAMP WITH TIME ZONE" in v.message
    assert "AT TIME ZONE 'UTC'" in v.fix


def test_every_violation_is_reported_not_only_the_first(extract: Path) -> None:
    run_sql(
        extract,
        "ALTER TABLE _meta ADD COLUMN owner VARCHAR",
        "UPDATE _meta SET rows = 1 WHERE table_name = 'orders'",
        "UPDATE _meta SET extracted_at = NULL WHERE table_name = 'events'",
        "UPDATE _meta SET query_mode = 'hybrid' WHERE table_name = 'customers'",
    )
    report = check(extract, source_name="Bad-Name")
    assert sorted(codes(report)) == sorted(
        [
            "source_name_invalid",
            "meta_column_extra",
            "rows_mismatch",
            "extracted_at_missing",
            "query_mode_invalid",
        ]
    ), report.to_text()


@pytest.mark.parametrize("name", ["Keboola", "1csv", "my-source", "a" * 64, "_x", ""])
def test_bad_source_name(extract: Path, name: str) -> None:
    v = only(check(extract, source_name=name), "source_name_invalid")
    assert "^[a-z][a-z0-9_]{0,62}$" in v.message


@pytest.mark.parametrize("name", ["main", "system", "temp", "memory", "information_schema", "pg_catalog", "select"])
def test_reserved_source_name(extract: Path, name: str) -> None:
    only(check(extract, source_name=name), "source_name_reserved")


@pytest.mark.parametrize("name", ["sample", "csv", "keboola", "in_house_2"])
def test_good_source_names(extract: Path, name: str) -> None:
    assert check(extract, source_name=name).ok


@pytest.mark.parametrize(
    ("name", "problem", "suggestion"),
    [
        ("Orders_X", "uppercase", "orders_x"),
        ("2024_orders", "starts with a digit", "t_2024_orders"),
        ("t" * 129, "129 characters long", "t" * 128),
        ("in-c-crm-orders", "'-'", "in_c_crm_orders"),
    ],
    ids=["uppercase", "digit", "too-long", "dashes"],
)
def test_invalid_table_name(extract: Path, name: str, problem: str, suggestion: str) -> None:
    add_parquet_table(extract, name)
    v = only(check(extract), "table_name_invalid")
    assert v.table == name
    assert problem in v.message
    assert repr(suggestion) in v.fix


def test_duplicate_table_names(extract: Path) -> None:
    run_sql(extract, "INSERT INTO _meta SELECT * FROM _meta WHERE table_name = 'orders'")
    v = only(check(extract), "table_name_duplicate")
    assert v.table == "orders"


def test_null_table_name(extract: Path) -> None:
    # A connector that dropped NOT NULL from the frozen DDL.
    run_sql(
        extract,
        "CREATE TABLE m2 AS FROM _meta",
        "DROP TABLE _meta",
        "ALTER TABLE m2 RENAME TO _meta",
        f"INSERT INTO _meta VALUES (NULL, 'lost', 1, NULL, TIMESTAMP '{BEFORE_NOW}', 'local')",
    )
    report = check(extract)
    # CREATE TABLE AS drops NOT NULL and DEFAULT too: each is reported, plus the NULL row itself.
    assert codes(report) == ["meta_column_not_null", "meta_column_default", "table_name_missing"], report.to_text()
    assert "row 4" in report.violations[-1].message


@pytest.mark.parametrize("mode", ["hybrid", "LOCAL", None])
def test_query_mode_not_local_or_remote(extract: Path, mode: str | None) -> None:
    value = "NULL" if mode is None else f"'{mode}'"
    run_sql(extract, f"UPDATE _meta SET query_mode = {value} WHERE table_name = 'customers'")
    v = only(check(extract), "query_mode_invalid")
    assert v.table == "customers"
    assert "UPDATE _meta SET query_mode = 'local' WHERE table_name = 'customers'" in v.fix


def test_rows_null_is_a_violation(extract: Path) -> None:
    run_sql(extract, "UPDATE _meta SET rows = NULL WHERE table_name = 'events'")
    v = only(check(extract), "rows_missing")
    assert v.table == "events"


@pytest.mark.parametrize("table", ["orders", "events", "customers"])
def test_rows_differ_from_the_data(extract: Path, table: str) -> None:
    run_sql(extract, f"UPDATE _meta SET rows = rows + 7 WHERE table_name = '{table}'")
    v = only(check(extract), "rows_mismatch")
    assert v.table == table
    assert "says" in v.message
    assert f"WHERE table_name = '{table}'" in v.fix


def test_extracted_at_null(extract: Path) -> None:
    run_sql(extract, "UPDATE _meta SET extracted_at = NULL WHERE table_name = 'orders'")
    v = only(check(extract), "extracted_at_missing")
    assert "UTC" in v.fix


def test_extracted_at_in_the_future(extract: Path) -> None:
    future = (NOW + timedelta(minutes=10)).replace(tzinfo=None)
    run_sql(extract, f"UPDATE _meta SET extracted_at = TIMESTAMP '{future}' WHERE table_name = 'orders'")
    v = only(check(extract), "extracted_at_future")
    assert "UTC" in v.message and "local time" in v.fix


def test_clock_skew_within_five_minutes_is_tolerated(extract: Path) -> None:
    soon = (NOW + timedelta(minutes=4)).replace(tzinfo=None)
    run_sql(extract, f"UPDATE _meta SET extracted_at = TIMESTAMP '{soon}'")
    assert check(extract).ok


def test_now_may_be_naive_utc(extract: Path) -> None:
    naive_now = NOW.replace(tzinfo=None)
    assert check(extract, now=naive_now).ok
    assert codes(check(extract, now=naive_now - timedelta(hours=2))) == ["extracted_at_future"] * 3


def test_local_time_east_of_utc_is_caught(extract: Path) -> None:
    # A connector writing local time in UTC+2 stamps data two hours "ahead".
    local = datetime(2026, 12, 1, 13, 30)
    run_sql(extract, f"UPDATE _meta SET extracted_at = TIMESTAMP '{local}' WHERE table_name = 'events'")
    assert codes(check(extract)) == ["extracted_at_future"]


@pytest.mark.parametrize(
    ("column", "new_type"),
    [("rows", "BIGINT[] USING [rows]"), ("extracted_at", "STRUCT(t TIMESTAMP) USING {'t': extracted_at}")],
    ids=["list", "struct"],
)
def test_a_column_of_an_odd_type_cannot_crash_the_check(extract: Path, column: str, new_type: str) -> None:
    run_sql(extract, f"ALTER TABLE _meta ALTER {column} TYPE {new_type}")
    v = only(check(extract), "meta_column_type")
    assert column in v.message


def test_meta_columns_in_another_order(extract: Path) -> None:
    run_sql(
        extract,
        "CREATE TABLE m2 (description VARCHAR, table_name VARCHAR NOT NULL, rows BIGINT, size_bytes BIGINT, "
        "extracted_at TIMESTAMP, query_mode VARCHAR DEFAULT 'local')",
        "INSERT INTO m2 SELECT description, table_name, rows, size_bytes, extracted_at, query_mode FROM _meta",
        "DROP TABLE _meta",
        "ALTER TABLE m2 RENAME TO _meta",
    )
    v = only(check(extract), "meta_column_order")
    assert "(description, table_name," in v.message
    assert 'SELECT "table_name", "description", "rows"' in v.fix and "meta.sql" in v.fix


def test_meta_without_not_null(extract: Path) -> None:
    run_sql(extract, "ALTER TABLE _meta ALTER table_name DROP NOT NULL")
    v = only(check(extract), "meta_column_not_null")
    assert "_meta.table_name allows NULL" in v.message
    assert "ALTER TABLE _meta ALTER table_name SET NOT NULL" in v.fix.replace('"', "")


def test_meta_without_the_query_mode_default(extract: Path) -> None:
    run_sql(extract, "ALTER TABLE _meta ALTER query_mode DROP DEFAULT")
    v = only(check(extract), "meta_column_default")
    assert "DEFAULT 'local'" in v.fix


def test_meta_constraints_come_from_the_spec_file() -> None:
    from contract_tests import spec

    assert spec.META_CONSTRAINTS["table_name"] == (True, None)
    assert spec.META_CONSTRAINTS["query_mode"] == (False, "'local'")
    assert not any(nn for nn, _ in spec.REMOTE_ATTACH_CONSTRAINTS.values())


@pytest.mark.parametrize("name", ["_meta", "_remote_attach"])
def test_contract_table_names_are_not_data_tables(extract: Path, name: str) -> None:
    run_sql(extract, f"INSERT INTO _meta VALUES ('{name}', NULL, 1, NULL, TIMESTAMP '{BEFORE_NOW}', 'local')")
    v = only(check(extract), "table_name_invalid")
    assert "reserved by the extract contract" in v.message
