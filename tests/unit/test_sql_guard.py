"""The query guard on DuckDB's real parse trees: references found in every position,
CTE scoping as DuckDB binds it, unknown nodes refused, and canonical SQL that means
what was checked (run against a real DuckDB with the same names)."""

from __future__ import annotations

import copy
import json
from typing import Any

import duckdb
import pytest

from agnes.engine import sql_guard
from agnes.engine.sql_guard import QueryRefused, check_query, make_resolver, sanitize_message

IDS = ["crm.orders", "crm.accounts", "crm.shared", "shop.items", "shop.shared", "hr.salaries"]
RESOLVE = make_resolver(IDS)


def ok(sql: str, readable: Any = None) -> sql_guard.GuardedQuery:
    return check_query(sql, readable=readable or (lambda t: True), resolve=RESOLVE)


def refused(sql: str, readable: Any = None) -> QueryRefused:
    with pytest.raises(QueryRefused) as info:
        ok(sql, readable)
    return info.value


def test_resolver_qualified_bare_and_ambiguous_names() -> None:
    assert RESOLVE("crm", "orders") == "crm.orders"
    assert RESOLVE(None, "orders") == "crm.orders" and RESOLVE("main", "ORDERS") == "crm.orders"
    assert RESOLVE(None, "shared") is None  # two sources have it: no bare name
    assert RESOLVE("CRM", "Orders") == "crm.orders"
    assert RESOLVE("crm", "items") is None and RESOLVE("nope", "orders") is None
    assert RESOLVE(None, "orderſ") is None  # no unicode case folding (ſ.upper() == 'S')


@pytest.mark.parametrize(
    ("sql", "tables"),
    [
        ("SELECT * FROM crm.orders", ["crm.orders"]),
        ("select * from ORDERS o join Accounts a on o.id = a.id", ["crm.accounts", "crm.orders"]),
        ("FROM orders", ["crm.orders"]),
        ("TABLE crm.orders", ["crm.orders"]),
        ("SELECT * FROM (SELECT * FROM items) s", ["shop.items"]),
        ("SELECT 1 WHERE 1 IN (SELECT id FROM items)", ["shop.items"]),
        ("SELECT (SELECT max(id) FROM items), EXISTS (FROM accounts)", ["crm.accounts", "shop.items"]),
        ("SELECT * FROM orders o, LATERAL (SELECT * FROM items i WHERE i.id = o.id)", ["crm.orders", "shop.items"]),
        ("SELECT * FROM orders UNION ALL SELECT * FROM items EXCEPT SELECT * FROM accounts",
         ["crm.accounts", "crm.orders", "shop.items"]),
        ("SELECT * FROM orders PIVOT (sum(x) FOR y IN (1, 2))", ["crm.orders"]),
        ("UNPIVOT orders ON a, b INTO NAME k VALUE v", ["crm.orders"]),
        ("SELECT sum(x) OVER (PARTITION BY (SELECT 1 FROM items)) FROM orders", ["crm.orders", "shop.items"]),
        ("SELECT * FROM orders LIMIT (SELECT count(*) FROM items)", ["crm.orders", "shop.items"]),
        ("SELECT * FROM orders ORDER BY (SELECT 1 FROM accounts)", ["crm.accounts", "crm.orders"]),
        ("SELECT * FROM range((SELECT count(*) FROM items))", ["shop.items"]),
        ("SELECT * FROM unnest((SELECT list(id) FROM items))", ["shop.items"]),
        ("DESCRIBE crm.orders", ["crm.orders"]),
        ("SUMMARIZE SELECT * FROM items", ["shop.items"]),
        ("SELECT * FROM crm.shared JOIN shop.shared USING (id)", ["crm.shared", "shop.shared"]),
        ("VALUES (1), (2)", []),
        ("SELECT * FROM range(10) r(i), generate_series(1, 3)", []),
        ("SELECT x FROM orders QUALIFY row_number() OVER (ORDER BY (SELECT 1 FROM items)) = 1",
         ["crm.orders", "shop.items"]),
        ("SELECT * FROM orders WHERE id = ANY (SELECT id FROM hr.salaries)", ["crm.orders", "hr.salaries"]),
    ],
)
def test_references_are_found_everywhere(sql: str, tables: list[str]) -> None:
    assert list(ok(sql).tables) == tables


def test_every_reference_must_be_readable() -> None:
    crm_only = frozenset({"crm.orders", "crm.accounts"})
    assert ok("SELECT * FROM orders JOIN accounts USING (id)", crm_only).tables == ("crm.accounts", "crm.orders")
    for sql in ("SELECT * FROM items", "SELECT * FROM orders WHERE id IN (SELECT id FROM shop.items)",
                "WITH x AS (SELECT * FROM items) SELECT 1", "DESCRIBE shop.items"):
        error = refused(sql, crm_only)
        assert error.code == "table_not_found" and "items" in error.message


def test_missing_and_forbidden_tables_get_the_same_message() -> None:
    crm_only = frozenset({"crm.orders"})
    forbidden = refused("SELECT * FROM shop.items", crm_only).message
    missing = refused("SELECT * FROM shop.nothing", crm_only).message
    assert forbidden.replace("items", "X") == missing.replace("nothing", "X")
    assert "GET /api/catalog/tables" in missing


class TestCteScoping:
    """DuckDB: a CTE is visible in its query and subqueries and in LATER CTEs; a
    non-recursive CTE does not see itself; a recursive one sees itself in its recursive part."""

    def test_cte_shadows_a_table_inside_its_scope_only(self) -> None:
        assert ok("WITH items AS (SELECT 1) SELECT * FROM items").tables == ()
        assert ok("SELECT * FROM (WITH items AS (SELECT 1) SELECT * FROM items), items").tables == ("shop.items",)

    def test_cte_body_sees_the_real_table_of_its_own_name(self) -> None:
        assert ok("WITH items AS (SELECT * FROM items WHERE id > 1) SELECT * FROM items").tables == ("shop.items",)

    def test_earlier_ctes_are_visible_later_ones_are_not(self) -> None:
        assert ok("WITH a AS (SELECT 1), b AS (SELECT * FROM a) SELECT * FROM b").tables == ()
        assert ok("WITH a AS (SELECT * FROM items), items AS (SELECT 1) SELECT * FROM a").tables == ("shop.items",)

    def test_recursive_anchor_reads_the_table_recursive_part_the_cte(self) -> None:
        sql = "WITH RECURSIVE items AS (SELECT * FROM items UNION ALL SELECT * FROM items WHERE false) FROM items"
        assert ok(sql).tables == ("shop.items",)
        assert ok("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) FROM r").tables == ()

    def test_a_cte_named_like_a_forbidden_table_is_just_a_cte(self) -> None:
        # No existence oracle: naming a CTE like a table you cannot read behaves as for any name.
        assert ok("WITH salaries AS (SELECT 1) SELECT * FROM salaries", {"crm.orders"}).tables == ()

    def test_ctes_are_renamed_so_a_wrong_scope_can_never_read_a_table(self) -> None:
        guarded = ok("WITH orders AS (SELECT 1 AS v) SELECT orders.v FROM orders")
        assert "_agnes_cte_1" in guarded.sql and "crm" not in guarded.sql

    def test_qualified_names_are_never_ctes(self) -> None:
        assert ok("WITH orders AS (SELECT 1) SELECT * FROM crm.orders").tables == ("crm.orders",)


def test_canonical_sql_runs_the_same_on_duckdb() -> None:
    con = duckdb.connect()
    con.execute("CREATE SCHEMA crm; CREATE TABLE crm.orders AS SELECT range AS id, range % 3 AS k FROM range(10);"
                "CREATE VIEW main.orders AS SELECT * FROM crm.orders")
    queries = [
        "SELECT k, count(*) FROM orders GROUP BY k ORDER BY k",
        "WITH o AS (SELECT * FROM orders WHERE id > 2) SELECT o.k, sum(o.id) FROM o GROUP BY ALL ORDER BY ALL",
        "SELECT id, row_number() OVER (PARTITION BY k ORDER BY id DESC) FROM orders ORDER BY id",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT sum(n) FROM r",
        "SELECT * FROM orders o WHERE id IN (SELECT max(id) FROM orders GROUP BY k) ORDER BY 1",
        "SELECT * FROM orders PIVOT (count(*) FOR k IN (0, 1, 2))",
        "SELECT [x * 2 FOR x IN [1, 2]], list_transform([1], y -> y + 1), {'a': 1}, 'it''s'",
    ]
    resolve = make_resolver(["crm.orders"])
    for sql in queries:
        guarded = check_query(sql, readable=lambda t: True, resolve=resolve)
        assert con.execute(guarded.sql).fetchall() == con.execute(sql).fetchall(), sql


@pytest.mark.parametrize(
    ("sql", "code"),
    [
        ("SELECT * FROM read_parquet('x.parquet')", "function_not_allowed"),
        ("SELECT * FROM duckdb_tables()", "function_not_allowed"),
        ("SELECT * FROM query_table('crm.orders')", "function_not_allowed"),
        ("SELECT * FROM system.main.range(3)", "function_not_allowed"),
        ("SELECT current_setting('memory_limit')", "function_not_allowed"),
        ("SELECT pg_catalog.pg_get_viewdef(1)", "function_not_allowed"),
        ("SELECT _x_crm_1.main.f(1)", "function_not_allowed"),
        ("SELECT no_such_function(1)", "function_not_allowed"),
        ("SELECT len(range(10000000))", "function_not_allowed"),
        ("SELECT repeat('ab', 10 * 1000 * 1000)", "function_not_allowed"),
        ("SELECT lpad('x', 2 ^ 40, 'y')", "function_not_allowed"),
        ("SELECT printf('%*d', 1000000000, 1)", "function_not_allowed"),
        ("SELECT * FROM 'data.csv'", "query_not_allowed"),
        ("SELECT * FROM _x_crm_1.main.orders", "table_not_found"),
        ("SELECT * FROM memory.crm.orders", "table_not_found"),
        ("SELECT * FROM information_schema.tables", "table_not_found"),  # no describer given: refused
        ("SELECT * FROM information_schema.schemata", "table_not_found"),
        ("SELECT * FROM duckdb_views", "table_not_found"),
        ("SELECT CAST(1 AS _x_crm_1.main.t)", "query_not_allowed"),
        ("SHOW TABLES", "query_not_allowed"),
        ("SELECT $1", "query_not_allowed"),
        ("EXPLAIN SELECT 1", "query_not_allowed"),
        ("PRAGMA version", "query_not_allowed"),
        ("PIVOT orders ON k USING count(*)", "multiple_statements"),
        ("SELECT 1; SELECT 2", "multiple_statements"),
        ("   -- nothing\n", "query_syntax"),
        ("SELEC 1", "query_syntax"),
        ("SELECT 1\x00", "query_syntax"),
        ("SELECT " + "abs(" * 300 + "1" + ")" * 300, "query_too_long"),
        ("SELECT " + "(SELECT " * 240 + "1" + ")" * 240, "query_too_long"),
        ("SELECT '" + "x" * 100_001 + "'", "query_too_long"),
    ],
)
def test_refusals(sql: str, code: str) -> None:
    assert refused(sql).code == code


def test_harmless_shapes_pass() -> None:
    for sql in ("SELECT lpad(cast(id AS VARCHAR), 8, '0') FROM orders", "SELECT repeat('-', 20)",
                "SELECT printf('%05d rows in %s', 12, 'x')", "SELECT * FROM json_each('{\"a\": 1}')",
                "SELECT unnest(range(5))", "SELECT list_sum(generate_series(1, 100))",
                "SELECT geomean(x) FROM (VALUES (1.0), (4.0)) v(x)", "SELECT 1;"):
        ok(sql)


def _tree(sql: str) -> dict[str, Any]:
    parser = sql_guard._parser()
    raw = parser.con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0]
    return json.loads(raw)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda n: n["from_table"].update(type="COLUMN_DATA"),  # an unknown table reference
        lambda n: n["from_table"].update(secret_path="/etc/passwd"),  # an unknown key on a known reference
        lambda n: n["select_list"][0].update({"class": "BOUND_REF"}),  # an unknown expression class
        lambda n: n.update(type="STATEMENT_NODE"),  # an unknown query node
        lambda n: n["modifiers"].append({"type": "FUTURE_MODIFIER"}),  # an unknown node anywhere
    ],
)
def test_unknown_nodes_fail_closed(monkeypatch: pytest.MonkeyPatch, mutate: Any) -> None:
    tree = _tree("SELECT id FROM crm.orders")
    mutate(tree["statements"][0]["node"])
    parser = sql_guard._parser()
    monkeypatch.setattr(parser, "parse", lambda sql: copy.deepcopy(tree))
    assert refused("SELECT id FROM crm.orders").code == "query_not_allowed"


def test_sanitize_message_strips_paths_internal_names_and_suggestions() -> None:
    text = ('IO Error: No files found that match "/data/extracts/hr/runs/2026/data/salaries.parquet" in '
            '"_x_hr_1a2b3c4d_7".main.salaries\nDid you mean "hr.salaries"? see s3://bucket/key.csv')
    clean = sanitize_message(text)
    assert "/data" not in clean and "_x_hr" not in clean and "Did you mean" not in clean and "s3://" not in clean
    assert sanitize_message("1/2 and a / b") == "1/2 and a / b"
    colon = sanitize_message('Binder Error: No matching columns found for "nope"\nDid you mean: "amount"')
    assert "Did you mean" not in colon and "amount" not in colon


def test_many_ctes_are_checked_in_linear_memory_and_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    import tracemalloc

    n = 3_000  # ~94 KB of SQL; the walker copied the CTE scope per CTE and node: ~135 MB peak here
    monkeypatch.setattr(sql_guard, "MAX_CTES", n)
    chain = "WITH c0 AS (SELECT 1 AS x), " + ", ".join(
        f"c{i} AS (SELECT x FROM c{i - 1})" for i in range(1, n)) + f" SELECT x FROM c{n - 1}"
    sql_guard._parser()
    tracemalloc.start()
    try:
        guarded = ok(chain)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert guarded.tables == () and f"_agnes_cte_{n}" in guarded.sql
    assert peak < 50 * 1024**2, peak  # chained scope frames: ~19 MB, about the parse tree itself
    monkeypatch.undo()
    over = "WITH " + ", ".join(f"c{i} AS (SELECT 1)" for i in range(sql_guard.MAX_CTES + 1)) + " SELECT 1"
    error = refused(over)
    assert error.code == "query_too_complex" and error.hint and "WITH" in error.hint


def test_later_cte_shadowing_and_visibility_with_chained_scopes() -> None:
    # CTE i sees CTEs 0..i-1 only: `b` in `a` is the table, not the later CTE b
    assert ok("WITH a AS (SELECT * FROM items), items AS (SELECT 1) SELECT * FROM a, items").tables == ("shop.items",)
    assert refused("WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a").code == "table_not_found"
    nested = ok("WITH items AS (SELECT 1 AS id) SELECT * FROM (WITH x AS (SELECT * FROM items) SELECT * FROM x)")
    assert nested.tables == ()


def test_parse_node_cap_and_out_of_memory_refuse_cleanly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sql_guard, "MAX_PARSE_NODES", 50)
    error = refused("SELECT * FROM orders WHERE id IN (" + ",".join(map(str, range(200))) + ")")
    assert error.code == "query_too_complex" and "parse nodes" in error.message
    monkeypatch.undo()

    def boom(*args: Any) -> None:
        raise MemoryError

    monkeypatch.setattr(sql_guard._Walker, "_visit", boom)
    assert refused("SELECT 1").code == "query_too_complex"
    monkeypatch.setattr(sql_guard, "MAX_TREE_CHARS", 100)
    assert refused("SELECT * FROM orders WHERE id IN (1, 2, 3, 4)").code == "query_too_complex"


def test_each_thread_parses_on_its_own_connection() -> None:
    import threading

    found: list[Any] = []
    thread = threading.Thread(target=lambda: found.append(sql_guard._parser()))
    thread.start()
    thread.join()
    mine = sql_guard._parser()
    assert found[0] is not mine and found[0].con is not mine.con and sql_guard._parser() is mine
    assert found[0].functions is mine.functions  # the function lists are read once
