"""Hostile SQL through the real guard + executor against a real serving catalog.

The user may read only source `alpha`. Every query below must be refused with the
expected code (and so the expected HTTP status), a message that names no file
system path, no internal database and no value from `beta` -- and the catalog
must keep answering afterwards, still locked.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agnes.engine.catalog import ServingCatalog
from agnes.engine.query import HTTP_STATUS, QueryBusy, QueryExecutor, QueryFailed, QueryRefused, QueryTimeout
from tests.security.conftest import SECRET, alpha_only

NOT_ALLOWED, FUNCTION = "query_not_allowed", "function_not_allowed"
TABLE, MULTI = "table_not_found", "multiple_statements"

HOSTILE: list[tuple[str, str, str]] = [
    # direct file and URL readers
    ("read_parquet_path", "SELECT * FROM read_parquet('{beta_parquet}')", FUNCTION),
    ("read_parquet_glob", "SELECT * FROM read_parquet('{extracts}/*/current/data/*.parquet')", FUNCTION),
    ("read_csv_passwd", "SELECT * FROM read_csv('/etc/passwd')", FUNCTION),
    ("read_csv_auto", "SELECT * FROM read_csv_auto('/etc/hosts', header = false)", FUNCTION),
    ("read_json", "SELECT * FROM read_json_auto('/etc/os-release')", FUNCTION),
    ("read_text", "SELECT content FROM read_text('/etc/passwd')", FUNCTION),
    ("read_blob", "SELECT * FROM read_blob('{beta_db}')", FUNCTION),
    ("glob", "SELECT * FROM glob('{extracts}/**')", FUNCTION),
    ("parquet_metadata", "SELECT * FROM parquet_metadata('{beta_parquet}')", FUNCTION),
    ("parquet_scan", "SELECT * FROM parquet_scan('{beta_parquet}')", FUNCTION),
    ("sniff_csv", "SELECT * FROM sniff_csv('/etc/passwd')", FUNCTION),
    ("sqlite_scan", "SELECT * FROM sqlite_scan('{beta_db}', 'salaries')", FUNCTION),
    ("query_table", "SELECT * FROM query_table('beta.salaries')", FUNCTION),
    ("query_fn", "SELECT * FROM query('SELECT * FROM beta.salaries')", FUNCTION),
    ("replacement_scan_abs", "SELECT * FROM '{beta_parquet}'", NOT_ALLOWED),
    ("replacement_scan_rel", "SELECT * FROM 'beta/current/data/salaries.parquet'", NOT_ALLOWED),
    ("replacement_scan_url", "SELECT * FROM 'https://example.com/x.csv'", NOT_ALLOWED),
    # statements that are not reads
    ("attach_etc", "ATTACH '/etc/passwd' AS pw", NOT_ALLOWED),
    ("attach_beta_db", "ATTACH '{beta_db}' AS b (READ_ONLY)", NOT_ALLOWED),
    ("detach_internal", "DETACH {x_beta}", NOT_ALLOWED),
    ("copy_into_extracts", "COPY (SELECT 1) TO '{extracts}/alpha/pwned.csv'", NOT_ALLOWED),
    ("copy_table_out", "COPY alpha.orders TO '/tmp/orders.parquet' (FORMAT parquet)", NOT_ALLOWED),
    ("export_database", "EXPORT DATABASE '{extracts}/dump'", NOT_ALLOWED),
    ("import_database", "IMPORT DATABASE '/etc'", NOT_ALLOWED),
    ("set_external_access", "SET enable_external_access = true", NOT_ALLOWED),
    ("reset_lock", "RESET lock_configuration", NOT_ALLOWED),
    ("set_search_path", "SET search_path = '{x_beta}.main'", NOT_ALLOWED),
    ("use_internal", "USE {x_beta}", NOT_ALLOWED),
    ("create_secret", "CREATE SECRET s (TYPE s3, KEY_ID 'a', SECRET 'b')", NOT_ALLOWED),
    ("install", "INSTALL httpfs", NOT_ALLOWED),
    ("load", "LOAD sqlite", NOT_ALLOWED),
    ("create_table", "CREATE TABLE t AS SELECT * FROM beta.salaries", NOT_ALLOWED),
    ("create_view", "CREATE TEMP VIEW v AS SELECT 1", NOT_ALLOWED),
    ("insert", "INSERT INTO alpha.orders VALUES (9, 9, 9.0)", NOT_ALLOWED),
    ("call", "CALL duckdb_views()", NOT_ALLOWED),
    ("pragma", "PRAGMA table_info('beta.salaries')", NOT_ALLOWED),
    ("explain", "EXPLAIN SELECT * FROM beta.salaries", NOT_ALLOWED),
    ("checkpoint", "CHECKPOINT", NOT_ALLOWED),
    ("prepared_param", "SELECT * FROM alpha.orders WHERE id = $1", NOT_ALLOWED),
    # functions that leak environment, configuration, SQL plans or view definitions
    ("getenv", "SELECT getenv('HOME')", FUNCTION),
    ("current_setting", "SELECT current_setting('allowed_directories')", FUNCTION),
    ("current_setting_qualified", "SELECT system.main.current_setting('temp_directory')", FUNCTION),
    ("pg_get_viewdef", "SELECT pg_get_viewdef(oid) FROM pg_catalog.pg_class", TABLE),
    ("pg_get_viewdef_alone", "SELECT pg_get_viewdef(1)", FUNCTION),
    ("json_serialize_plan", "SELECT json_serialize_plan('SELECT * FROM beta.salaries')", FUNCTION),
    ("getvariable", "SELECT getvariable('x')", FUNCTION),
    ("internal_macro", "SELECT {x_beta}.main.anything(1)", FUNCTION),
    ("unicode_function", "SELECT g\u0435tenv('HOME')", FUNCTION),  # Cyrillic e
    # multi-statement, comments, case, quoting, unicode, size
    ("two_statements", "SELECT 1; SELECT * FROM beta.salaries", MULTI),
    ("attach_after_select", "SELECT 1; ATTACH '/etc/passwd' AS pw", MULTI),
    ("comment_newline", "SELECT 1 -- harmless\n; DROP TABLE alpha.orders", MULTI),
    ("comment_hides_schema", "SELECT * FROM /* alpha. */ beta.salaries", TABLE),
    ("case_tricks", "sElEcT * fRoM BeTa.SaLaRiEs", TABLE),
    ("quoted_upper", 'SELECT * FROM "BETA"."SALARIES"', TABLE),
    ("fullwidth_schema", "SELECT * FROM \uff42\uff45\uff54\uff41.salaries", TABLE),
    ("cyrillic_schema", 'SELECT * FROM "b\u0435ta".salaries', TABLE),
    ("very_long", "SELECT " + "1 + " * 30_000 + "1", "query_too_long"),
    ("deeply_nested", "SELECT " + "abs(" * 2_000 + "1" + ")" * 2_000, "query_too_long"),
    ("nul_byte", "SELECT 1\x00; ATTACH '/etc/passwd' AS pw", "query_syntax"),
    # another source's table by every route
    ("qualified", "SELECT * FROM beta.salaries", TABLE),
    ("bare_unique_name", "SELECT * FROM salaries", TABLE),
    ("bare_main_schema", "SELECT * FROM main.vault", TABLE),
    ("cte", "WITH x AS (SELECT * FROM beta.salaries) SELECT * FROM x", TABLE),
    ("nested_cte", "WITH a AS (SELECT 1), b AS (WITH c AS (SELECT * FROM vault) SELECT * FROM c) FROM b", TABLE),
    ("recursive_anchor", "WITH RECURSIVE r AS (SELECT * FROM beta.vault UNION ALL SELECT * FROM r WHERE false) FROM r",
     TABLE),
    ("subquery_from", "SELECT * FROM (SELECT * FROM beta.salaries) s", TABLE),
    ("subquery_where", "SELECT * FROM alpha.orders WHERE id IN (SELECT id FROM beta.salaries)", TABLE),
    ("subquery_select", "SELECT (SELECT max(salary) FROM beta.salaries)", TABLE),
    ("exists", "SELECT 1 WHERE EXISTS (SELECT 1 FROM beta.vault WHERE code LIKE 'T%')", TABLE),
    ("lateral", "SELECT * FROM alpha.orders o, LATERAL (SELECT * FROM beta.salaries s WHERE s.id = o.id)", TABLE),
    ("union", "SELECT id, name FROM alpha.customers UNION ALL SELECT * FROM beta.salaries", TABLE),
    ("join", "SELECT * FROM alpha.orders JOIN beta.salaries USING (id)", TABLE),
    ("limit_subquery", "SELECT * FROM alpha.orders LIMIT (SELECT count(*) FROM beta.salaries)", TABLE),
    ("window_subquery", "SELECT sum(id) OVER (ORDER BY (SELECT 1 FROM beta.vault)) FROM alpha.orders", TABLE),
    ("pivot_source", "SELECT * FROM beta.salaries PIVOT (count(*) FOR id IN (1, 2))", TABLE),
    ("table_fn_arg", "SELECT * FROM range((SELECT count(*) FROM beta.salaries))", TABLE),
    ("unnest_subquery", "SELECT * FROM unnest((SELECT list(salary) FROM beta.salaries))", TABLE),
    ("describe", "DESCRIBE beta.salaries", TABLE),
    ("summarize", "SUMMARIZE beta.salaries", TABLE),
    # information_schema.tables/columns answer, filtered (test_information_schema_shows_only_readable_tables)
    ("information_schema_other", "SELECT * FROM information_schema.schemata", TABLE),
    ("information_schema_catalog", "SELECT * FROM system.information_schema.tables", TABLE),
    ("duckdb_tables_fn", "SELECT * FROM duckdb_tables()", FUNCTION),
    ("duckdb_views_fn", "SELECT sql FROM duckdb_views()", FUNCTION),
    ("duckdb_views_view", "SELECT * FROM duckdb_views", TABLE),
    ("duckdb_databases_fn", "SELECT path FROM duckdb_databases()", FUNCTION),
    ("pg_views", "SELECT definition FROM pg_catalog.pg_views", TABLE),
    ("show_tables", "SHOW TABLES", NOT_ALLOWED),
    ("show_all_tables", "SHOW ALL TABLES", NOT_ALLOWED),
    ("internal_catalog_3part", "SELECT * FROM {x_beta}.main.salaries", TABLE),
    ("internal_catalog_2part", "SELECT * FROM {x_beta}.salaries", TABLE),
    ("internal_catalog_meta", "SELECT * FROM {x_beta}.main._meta", TABLE),
    ("memory_catalog", "SELECT * FROM memory.beta.salaries", TABLE),
    ("system_catalog", "SELECT * FROM system.main.duckdb_settings", TABLE),
    ("time_travel", "SELECT * FROM beta.salaries AT (VERSION => 1)", TABLE),
    # one-liners that would allocate outside DuckDB's memory limit
    ("huge_list", "SELECT len(range(10000000000))", FUNCTION),
    ("huge_repeat", "SELECT repeat('x', 10000000000)", FUNCTION),
    ("huge_printf", "SELECT printf('%2000000000d', 1)", FUNCTION),
]

_PATH = re.compile(r"(?:/[\w.\-]+){2,}")


@pytest.fixture(scope="module")
def places(catalog: ServingCatalog) -> dict[str, str]:
    beta_run = catalog.sources["beta"]
    x_beta = catalog.execute_readonly(
        "SELECT database_name FROM duckdb_databases() WHERE database_name LIKE '\\_x\\_beta%' ESCAPE '\\'"
    ).column(0)[0].as_py()
    return {"beta_parquet": str(beta_run / "data" / "salaries.parquet"), "beta_db": str(beta_run / "extract.duckdb"),
            "extracts": str(catalog.extracts_dir), "x_beta": x_beta}


def test_at_least_45_hostile_queries() -> None:
    assert len(HOSTILE) >= 45 and len({name for name, _sql, _code in HOSTILE}) == len(HOSTILE)


async def attempt(executor: QueryExecutor, sql: str) -> Exception:
    try:
        guarded = await executor.guard(sql, readable=alpha_only)
        await executor.run(guarded)
    except (QueryRefused, QueryFailed, QueryTimeout, QueryBusy) as exc:
        return exc
    pytest.fail(f"not refused: {sql[:200]!r}")


def assert_clean(exc: Exception, places: dict[str, str]) -> None:
    message = f"{exc.message} {exc.hint or ''}".replace("GET /api/catalog/tables", "")  # type: ignore[attr-defined]
    assert message.strip()
    assert not _PATH.search(message), message
    for leak in (SECRET, "_x_", "_r_", places["extracts"], "extract.duckdb", ".parquet"):
        assert leak not in message, (leak, message)


@pytest.mark.parametrize(("name", "template", "code"), HOSTILE, ids=[h[0] for h in HOSTILE])
async def test_hostile_query_is_refused(
    executor: QueryExecutor, places: dict[str, str], name: str, template: str, code: str
) -> None:
    sql = template.format(**places)
    exc = await attempt(executor, sql)
    assert exc.code == code, (name, exc.code, exc.message)  # type: ignore[attr-defined]
    assert HTTP_STATUS[code] in (400, 403, 404, 413)
    assert_clean(exc, places)


async def test_missing_and_forbidden_answer_alike(executor: QueryExecutor, places: dict[str, str]) -> None:
    answers = [await attempt(executor, f"SELECT * FROM {name}") for name in ("beta.vault", "beta.nope", "nope.vault")]
    assert {a.code for a in answers} == {TABLE}  # type: ignore[attr-defined]
    assert len({a.message.replace(n, "?") for a, n in zip(answers, ("beta.vault", "beta.nope", "nope.vault"),
                                                           strict=True)}) == 1  # type: ignore[attr-defined]


async def test_runtime_errors_are_sanitized(executor: QueryExecutor, places: dict[str, str]) -> None:
    exc = await attempt(executor, "SELECT CAST(name AS INTEGER) FROM alpha.customers")
    assert exc.code == "query_failed" and HTTP_STATUS["query_failed"] == 422  # type: ignore[attr-defined]
    assert "Could not convert" in exc.message  # type: ignore[attr-defined]
    assert_clean(exc, places)


def _written(extracts: Path) -> bool:
    return bool(list(extracts.rglob("pwned*"))) or (extracts / "dump").exists() or Path("/tmp/orders.parquet").exists()


async def test_nothing_was_written_and_the_catalog_is_still_locked(
    catalog: ServingCatalog, executor: QueryExecutor, places: dict[str, str]
) -> None:
    for _name, template, _code in HOSTILE[:40]:
        await attempt(executor, template.format(**places))
    assert not _written(Path(places["extracts"]))
    settings = catalog.execute_readonly(
        "SELECT current_setting('enable_external_access'), current_setting('lock_configuration')")
    assert settings.to_pylist() == [{settings.column_names[0]: False, settings.column_names[1]: True}]
    result = await executor.run(await executor.guard("SELECT count(*) AS n FROM orders", readable=alpha_only))
    assert result.table.to_pylist() == [{"n": 4}]


async def test_information_schema_shows_only_readable_tables(executor: QueryExecutor) -> None:
    """design.md: the information schema shows only what the user may read -- rewritten to literal
    rows of the readable tables, so nothing of beta (names, columns, paths) can appear."""
    guarded = await executor.guard("SELECT table_schema, table_name FROM information_schema.tables ORDER BY 2",
                                   readable=alpha_only)
    assert guarded.per_user and "beta" not in guarded.sql and "information_schema" not in guarded.sql
    rows = (await executor.run(guarded)).table.to_pylist()
    assert rows and {r["table_schema"] for r in rows} == {"alpha"}
    assert {"customers", "orders"} <= {r["table_name"] for r in rows}
    cols = await executor.run(await executor.guard(
        "SELECT c.table_name, column_name, data_type FROM information_schema.columns c "
        "WHERE table_schema = 'alpha' AND c.table_name = 'customers' ORDER BY ordinal_position", readable=alpha_only))
    assert [r["column_name"] for r in cols.table.to_pylist()] == ["id", "name"]
    beta = await executor.run(await executor.guard(
        "SELECT count(*) AS n FROM information_schema.columns WHERE table_schema = 'beta'", readable=alpha_only))
    assert beta.table.to_pylist() == [{"n": 0}]
    nothing = await executor.run(await executor.guard("SELECT * FROM information_schema.tables",
                                                      readable=lambda t: False))
    assert nothing.table.num_rows == 0 and "table_name" in nothing.table.column_names
    everything = await executor.guard("SELECT DISTINCT table_schema FROM information_schema.tables",
                                      readable=lambda t: True)
    assert {r["table_schema"] for r in (await executor.run(everything)).table.to_pylist()} == {"alpha", "beta"}
