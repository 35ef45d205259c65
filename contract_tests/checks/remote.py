"""Remote (pass-through) tables: `_remote_attach` and the views that use it.

A remote view may read only from aliases declared in `_remote_attach`; the
references are found with DuckDB's own parser (`json_serialize_sql`), never
with regex, so quoting, CTEs and subqueries cannot hide one.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

import duckdb

from ..names import alias_problem, extension_problem, token_env_problem, url_problem
from ..report import Report, TableInfo
from ..spec import CONTRACT_TABLES, REMOTE_ATTACH_COLUMNS, REMOTE_ATTACH_CONSTRAINTS, REMOTE_ATTACH_TABLE
from .catalog import Catalog, check_columns, q, sql_str
from .meta import MetaRow

#: Table functions that take an ATTACH alias as first argument and run SQL there.
_ALIAS_QUERY_FUNCTIONS = frozenset({"postgres_query", "mysql_query", "bigquery_query", "sqlite_query"})


@dataclass(frozen=True)
class Ref:
    """One relation a view reads: an alias-qualified table or something else."""

    alias: str | None  # catalog (or first qualifier) of a table, or the alias of *_query
    shown: str  # how to name it in a message
    kind: str  # 'table' | 'local' | 'function'


def read_attach(con: duckdb.DuckDBPyConnection, catalog: Catalog, report: Report, has_remote: bool) -> set[str] | None:
    """Check `_remote_attach`; return the declared aliases (lowercase), or None when absent."""
    name = catalog.table(REMOTE_ATTACH_TABLE)
    if name is None:
        if catalog.view(REMOTE_ATTACH_TABLE):
            report.add(
                "remote_attach_not_a_table",
                REMOTE_ATTACH_TABLE,
                "_remote_attach is a view; the contract needs a base table",
                "DROP VIEW _remote_attach and create it with contract_tests/spec/remote_attach.sql",
            )
        elif has_remote:
            report.add(
                "remote_attach_missing",
                REMOTE_ATTACH_TABLE,
                "_meta has remote tables but extract.duckdb has no _remote_attach table",
                "create it with contract_tests/spec/remote_attach.sql and insert one row per ATTACH alias "
                "your remote views use",
            )
        return None
    source, _exact = check_columns(con, report, name, REMOTE_ATTACH_COLUMNS, "remote_attach", "remote_attach.sql",
                                  REMOTE_ATTACH_CONSTRAINTS)
    select = ", ".join(
        f"CAST({q(source[c])} AS VARCHAR)" if c in source else "NULL::VARCHAR" for c in REMOTE_ATTACH_COLUMNS
    )
    rows = con.execute(f"SELECT {select} FROM {q(name)}").fetchall()  # noqa: S608 — names are quoted
    if not rows and has_remote:
        report.add(
            "remote_attach_empty",
            REMOTE_ATTACH_TABLE,
            "_remote_attach has no rows, so no remote view can be attached",
            "INSERT INTO _remote_attach VALUES ('<alias>', '<extension>', '<url without secret>', '<ENV_VAR_NAME>')",
        )
    counts = Counter(r[0].lower() for r in rows if r[0])
    for alias, n in counts.items():
        if n > 1:
            report.add(
                "remote_attach_alias_invalid",
                REMOTE_ATTACH_TABLE,
                f"alias {alias!r} is declared {n} times in _remote_attach",
                f"keep one row for {sql_str(alias)}, or give each ATTACH its own alias and use it in the views",
            )
    aliases: set[str] = set()
    for i, (alias, extension, url, token_env) in enumerate(rows, 1):
        label = f"alias {alias!r}" if alias else f"_remote_attach row {i}"
        if alias:
            aliases.add(alias.lower())
        for problem in (alias_problem(alias), extension_problem(extension), url_problem(url),
                        token_env_problem(token_env)):
            if problem is not None:
                report.add(problem.code, REMOTE_ATTACH_TABLE, f"{label}: {problem.message}", problem.fix)
    return aliases


def view_query(con: duckdb.DuckDBPyConnection, create_sql: str) -> dict | None:
    """Parse the SELECT of a `CREATE VIEW … AS <select>` text into DuckDB's JSON AST."""
    text = create_sql.strip().rstrip(";")
    start = 0
    while (i := text.find(" AS ", start)) != -1:
        start = i + 1
        out = con.execute("SELECT json_serialize_sql(?)", [text[i + 4 :]]).fetchone()[0]
        ast = json.loads(out)
        if not ast.get("error"):
            return ast
    return None


def _walk(node, refs: list[Ref], ctes: set[str]) -> None:
    if isinstance(node, list):
        for item in node:
            _walk(item, refs, ctes)
        return
    if not isinstance(node, dict):
        return
    for entry in (node.get("cte_map") or {}).get("map") or []:
        ctes.add(str(entry.get("key", "")).lower())
    kind = node.get("type")
    if kind == "BASE_TABLE":
        cat, schema, table = node.get("catalog_name") or "", node.get("schema_name") or "", node.get("table_name")
        shown = ".".join(p for p in (cat, schema, table) if p)
        if cat or schema:
            refs.append(Ref((cat or schema).lower(), shown, "table"))
        else:
            refs.append(Ref(None, shown, "local"))
    elif kind == "TABLE_FUNCTION":
        fn = node.get("function") or {}
        name = str(fn.get("function_name", "")).lower()
        args = fn.get("children") or []
        first = args[0] if args else {}
        const = (first.get("value") or {}).get("value") if first.get("class") == "CONSTANT" else None
        if name in _ALIAS_QUERY_FUNCTIONS and isinstance(const, str):
            refs.append(Ref(const.lower(), f"{name}({const!r}, …)", "table"))
        else:
            refs.append(Ref(None, f"{name}(…)", "function"))
    for value in node.values():
        _walk(value, refs, ctes)


def view_refs(ast: dict) -> list[Ref]:
    """Every relation the view reads, minus references to its own CTEs."""
    refs: list[Ref] = []
    ctes: set[str] = set()
    _walk(ast.get("statements", []), refs, ctes)
    return [r for r in refs if not (r.kind == "local" and r.shown.lower() in ctes)]


def check_remote_row(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    row: MetaRow,
    aliases: set[str] | None,
    report: Report,
) -> TableInfo:
    """A remote row needs a view that reads only from declared aliases."""
    name = row.table_name or ""
    info = TableInfo(name=name, query_mode=row.query_mode, meta_rows=row.rows)
    view = catalog.view(name)
    if view is None:
        extra = " (there is a base table of that name — remote tables are views)" if catalog.table(name) else ""
        report.add(
            "remote_view_missing",
            name,
            f"remote table {name!r} has no view in extract.duckdb{extra}",
            f"ATTACH the source under its alias while writing the extract, then CREATE VIEW {q(name)} AS "
            "SELECT * FROM <alias>.<schema>.<table>; or set query_mode = 'local' and write its data",
        )
        return info
    info.data_kind = "remote_view"
    ast = view_query(con, view[1])
    if ast is None:
        report.add(
            "remote_view_unparseable",
            name,
            f"the SQL of view {view[0]} cannot be parsed by DuckDB {duckdb.__version__}",
            f"recreate the view with duckdb==1.5.5: CREATE OR REPLACE VIEW {q(name)} AS SELECT ... FROM <alias>...",
        )
        return info
    for ref in dict.fromkeys(view_refs(ast)):
        # With no declared alias at all, remote_attach_missing/_empty already says what to add.
        if ref.kind == "table" and (not aliases or ref.alias in aliases):
            continue
        if ref.kind == "table":
            report.add(
                "remote_alias_undeclared",
                name,
                f"view {view[0]} reads {ref.shown}, but alias {ref.alias!r} is not declared in _remote_attach",
                f"INSERT INTO _remote_attach (alias, extension, url, token_env) VALUES ({sql_str(ref.alias)}, "
                "'<extension>', '<url without secret>', '<ENV_VAR_NAME>') — or fix the alias in the view",
            )
        else:
            what = "a table of the extract itself" if ref.kind == "local" else "a table function"
            report.add(
                "remote_view_bad_reference",
                name,
                f"view {view[0]} reads {ref.shown} ({what}); a remote view may read only from "
                "aliases declared in _remote_attach",
                "qualify every table with its ATTACH alias (<alias>.<schema>.<table>); for local data use "
                "query_mode = 'local' with parquet or a base table instead",
            )
    return info


def check_orphan_views(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    meta_names: set[str],
    aliases: set[str] | None,
    report: Report,
) -> None:
    """A view reading a declared remote alias but without a `_meta` row is a forgotten remote table.

    Helper views that do not touch a remote alias (e.g. over local data, for
    standalone use) stay allowed; views named in `_meta` are checked above.
    """
    if not aliases:
        return
    lowered = {n.lower() for n in meta_names} | {t.lower() for t in CONTRACT_TABLES}
    for key, (name, sql) in sorted(catalog.views.items()):
        if key in lowered:
            continue
        ast = view_query(con, sql)
        if ast is None:
            continue
        used = sorted({r.alias for r in view_refs(ast) if r.kind == "table" and r.alias in aliases})
        if not used:
            continue
        report.add(
            "view_without_meta",
            name,
            f"view {name} reads remote alias {', '.join(repr(a) for a in used)} but has no _meta row, so it "
            "would never be published (a forgotten remote table?)",
            f"INSERT INTO _meta (table_name, extracted_at, query_mode) VALUES ({sql_str(name)}, "
            "<naive UTC timestamp>, 'remote') — or DROP VIEW " + q(name) + " if it is not meant to be published",
        )
