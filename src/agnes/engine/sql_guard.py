"""The query guard: decide, on DuckDB's own parse tree, whether a user's SQL may run.

Why a parse tree and not text: spacing, quoting, comments, case and unicode
vary endlessly; the reference system's regex guard was bypassed. Here DuckDB
parses the SQL (on a locked parser database that holds no data), and we walk
`json_serialize_sql`'s tree: every table reference must resolve to a catalog
table the user may read, every function must be a known built-in that is not
on the deny list, and any node we do not recognise refuses the query (fail
closed). The accepted tree is printed back (`json_deserialize_sql`) with every
table qualified as "source"."table", so what runs is exactly what was checked
-- a bare name cannot change owner between check and run -- and that SQL is
checked once more. `information_schema.tables` and `.columns` are rewritten to
literal rows that list only the tables this caller may read (design.md: the
information schema shows only what the user may read). The walk is linear in the tree (CTE scopes are chained frames,
never copies) and capped in nodes, CTEs and tree size, because it runs before a
query slot is taken. Runtime caps live in query.py.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

import duckdb

from agnes.engine.connection import open_parser
from agnes.engine.limits import generated_size_error

MAX_QUERY_CHARS = 100_000
MAX_EXPRESSION_DEPTH = 250  # DuckDB's default is 1000; deeper trees also overflow json.loads
# Caps on what one check may cost (it runs outside the query slots). 100 KB of ordinary SQL
# stays well inside them: a 14,000-value IN list is ~42,000 nodes and 2 MB of tree text.
MAX_PARSE_NODES = 150_000
MAX_CTES = 500
MAX_TREE_CHARS = 16 * 1024**2
TOO_COMPLEX_HINT = ("Simplify the query: fewer WITH clauses and expressions; filter with WHERE or join a table "
                    "instead of long literal lists.")

# Pure row generators; every other table function reads files, URLs, settings or the catalog.
TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest", "json_each", "json_tree"})
# Known scalar/aggregate names that leak configuration, plan arbitrary SQL text, change
# state or sleep. Built-in macros that run a subquery (pg_get_viewdef ...) are added at start.
DENIED_FUNCTIONS = frozenset({
    "current_setting", "getenv", "getvariable", "json_serialize_plan", "json_serialize_sql",
    "json_deserialize_sql", "json_execute_serialized_sql", "nextval", "currval", "setseed",
    "sleep_ms", "pg_sleep", "write_log", "query", "query_table", "read_text", "read_blob",
})
_DENIED_PREFIXES = ("duckdb_", "pragma_", "__internal", "sqlite_", "postgres_", "mysql_", "read_", "parquet_")
_EXTRA_FUNCTIONS = frozenset({"unnest", "unlist"})  # parser-level functions absent from duckdb_functions()

NOT_FOUND_HINT = "List what you can read with GET /api/catalog/tables."
Resolver = Callable[[str | None, str], str | None]
# (table id, [(column, DuckDB type)], description) of every served table; the guard filters it
Describer = Callable[[], Iterable[tuple[str, list[tuple[str, str]], str | None]]]
_INFO_COLUMNS = {
    "tables": ("table_catalog", "table_schema", "table_name", "table_type", "table_comment"),
    "columns": ("table_catalog", "table_schema", "table_name", "column_name", "ordinal_position", "data_type",
                "is_nullable"),
}

_EXPRESSIONS = frozenset({
    "BETWEEN", "CASE", "CAST", "COLLATE", "COLUMN_REF", "COMPARISON", "CONJUNCTION", "CONSTANT",
    "FUNCTION", "LAMBDA", "OPERATOR", "POSITIONAL_REFERENCE", "STAR", "SUBQUERY", "WINDOW", "PARAMETER",
})
_QUERY_NODES = frozenset({"SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE"})
_OTHER_NODES = frozenset({
    "LIMIT_MODIFIER", "LIMIT_PERCENT_MODIFIER", "ORDER_MODIFIER", "DISTINCT_MODIFIER",
    "ORDER_DEFAULT", "ASCENDING", "DESCENDING",
})
_REF_COMMON = {"type", "alias", "sample", "query_location"}
_TABLE_REFS: dict[str, frozenset[str]] = {
    "BASE_TABLE": frozenset(_REF_COMMON | {"schema_name", "table_name", "catalog_name", "column_name_alias",
                                           "at_clause"}),
    "JOIN": frozenset(_REF_COMMON | {"left", "right", "condition", "join_type", "ref_type", "using_columns",
                                     "delim_flipped", "duplicate_eliminated_columns"}),
    "SUBQUERY": frozenset(_REF_COMMON | {"subquery", "column_name_alias"}),
    "TABLE_FUNCTION": frozenset(_REF_COMMON | {"function", "column_name_alias", "with_ordinality"}),
    "EMPTY": frozenset(_REF_COMMON),
    "EXPRESSION_LIST": frozenset(_REF_COMMON | {"values", "expected_names", "expected_types"}),
    "PIVOT": frozenset(_REF_COMMON | {"source", "aggregates", "unpivot_names", "pivots", "groups",
                                      "column_name_alias", "include_nulls"}),
    "SHOW_REF": frozenset(_REF_COMMON | {"query", "show_type", "table_name", "schema_name", "catalog_name"}),
}
_FILE_LIKE = re.compile(r"[/\\:~]|\.(csv|tsv|txt|parquet|json|jsonl|ndjson|gz|zst|xlsx?|duckdb|db|sqlite)$", re.I)
_PATH = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"`]*|(?:/[^\s'\"`/()]+){2,}/?)")
_INTERNAL = re.compile(r"\b_[xr]_\w+")


class QueryRefused(Exception):
    """The guard refuses the query; `code` is stable for the API, `message` is safe to show."""

    def __init__(self, code: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.hint = code, message, hint


@dataclass(frozen=True)
class GuardedQuery:
    """A checked query: `sql` is what runs, `tables` the table ids it reads (for audit)."""

    sql: str
    tables: tuple[str, ...]
    per_user: bool = False  # the SQL holds what this caller may read (information_schema): never share it


def sanitize_message(message: str, limit: int = 2000) -> str:
    """Strip absolute paths/URLs, internal database names and catalog suggestions from a message."""
    message = re.sub(r"\s*Did you mean\b[^\n]*", "", message)  # "Did you mean x" and "Did you mean: x"
    message = _INTERNAL.sub("<internal>", _PATH.sub("<path>", message))
    return message if len(message) <= limit else message[:limit] + "..."


def make_resolver(table_ids: Iterable[str]) -> Resolver:
    """`source.table` -> its id; a bare `table` -> its owner's id while only one source has it."""
    ids = set(table_ids)
    owners: dict[str, list[str]] = {}
    for tid in ids:
        owners.setdefault(tid.split(".", 1)[1], []).append(tid)
    bare = {name: found[0] for name, found in owners.items() if len(found) == 1}

    def resolve(schema: str | None, name: str) -> str | None:
        name = _lower(name)
        if schema is None or _lower(schema) == "main":
            return bare.get(name)
        tid = f"{_lower(schema)}.{name}"
        return tid if tid in ids else None

    return resolve


def check_query(
    sql: str,
    *,
    readable: Callable[[str], bool] | AbstractSet[str],
    resolve: Resolver,
    describe: Describer | None = None,
    max_chars: int = MAX_QUERY_CHARS,
) -> GuardedQuery:
    """Accept one read-only SELECT over readable tables, or raise `QueryRefused`."""
    can_read = readable.__contains__ if isinstance(readable, AbstractSet) else readable
    if len(sql) > max_chars:
        raise QueryRefused("query_too_long", f"The query is {len(sql):,} characters; the limit is {max_chars:,}.",
                           "Send shorter SQL: filter with WHERE instead of long literal lists.")
    if "\x00" in sql:
        raise QueryRefused("query_syntax", "The query contains a NUL character.")
    parser = _parser()
    tree = parser.parse(sql)
    walker = _Walker(parser, resolve, can_read, describe)
    tables = walker.walk(tree)
    canonical = parser.deserialize(tree)
    again = _Walker(parser, resolve, can_read).walk(parser.parse(canonical))
    if again != tables:  # the printed SQL must mean what we checked; refuse if it does not
        raise QueryRefused("query_not_allowed", "This query shape cannot be checked safely; rewrite it more simply.")
    return GuardedQuery(canonical, tuple(sorted(tables)), per_user=walker.per_user)


def _lower(name: str) -> str:
    """ASCII-only lowering, like DuckDB's case-insensitive names (no unicode folding tricks)."""
    return name.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class _Parser:
    """A locked, empty DuckDB used only to parse and print SQL; one per thread (`_parser()`),
    so a long check never makes another wait."""

    def __init__(self) -> None:
        self.con = open_parser(MAX_EXPRESSION_DEPTH)
        self.functions, self.denied = _function_lists(self.con)
        self.con.execute("SET lock_configuration = true")

    def parse(self, sql: str) -> dict[str, Any]:
        try:
            statements = self.con.extract_statements(sql)
        except duckdb.PermissionException as exc:
            raise QueryRefused("query_not_allowed", "Only SELECT queries are allowed.") from exc
        except duckdb.Error as exc:
            text = str(exc)
            if "expression depth" in text or "memory exhausted" in text:
                raise QueryRefused("query_too_long", f"The query is nested too deeply "
                                   f"(limit {MAX_EXPRESSION_DEPTH} levels).") from exc
            raise QueryRefused("query_syntax", sanitize_message(text)) from exc
        if not statements:
            raise QueryRefused("query_syntax", "The query is empty.")
        if len(statements) > 1:
            raise QueryRefused("multiple_statements", f"Send exactly one statement; got {len(statements)}.",
                               "Remove the extra ';'. A PIVOT without an IN list also counts as two: "
                               "list the values, e.g. PIVOT t ON col IN ('a', 'b') USING sum(x).")
        kind = statements[0].type
        if kind != duckdb.StatementType.SELECT:
            raise QueryRefused("query_not_allowed", f"Only SELECT queries are allowed (got {kind.name}).",
                               "Agnes serves data read-only; write a SELECT (or WITH ... SELECT, VALUES, FROM t).")
        raw = self.con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0]
        if len(raw) > MAX_TREE_CHARS:
            raise _too_complex(f"its parse tree is over {MAX_TREE_CHARS // 1024**2} MB")
        try:
            tree = json.loads(raw)
        except RecursionError as exc:
            raise QueryRefused("query_too_long", "The query is nested too deeply.") from exc
        except MemoryError as exc:
            raise _too_complex("its parse tree does not fit in memory") from exc
        if tree.get("error") or len(tree.get("statements", ())) != 1:
            detail = sanitize_message(str(tree.get("error_message", "")))
            raise QueryRefused("query_not_allowed", f"This query form is not supported: {detail}")
        return tree

    def deserialize(self, tree: dict[str, Any]) -> str:
        try:
            text = json.dumps(tree)
        except RecursionError as exc:
            raise QueryRefused("query_too_long", "The query is nested too deeply.") from exc
        except MemoryError as exc:
            raise _too_complex("printing it back ran out of memory") from exc
        return self.con.execute("SELECT json_deserialize_sql(?::JSON)", [text]).fetchone()[0]


_LOCAL = threading.local()
_FUNCTIONS: tuple[frozenset[str], frozenset[str]] | None = None
_FUNCTIONS_LOCK = threading.Lock()


def _parser() -> _Parser:
    """This thread's parser (created on first use; the query pool's threads live long)."""
    parser = getattr(_LOCAL, "parser", None)
    if parser is None:
        parser = _LOCAL.parser = _Parser()
    return parser


def _function_lists(con: duckdb.DuckDBPyConnection) -> tuple[frozenset[str], frozenset[str]]:
    """(known functions, denied functions), read once from DuckDB's own list."""
    global _FUNCTIONS
    with _FUNCTIONS_LOCK:
        if _FUNCTIONS is None:
            rows = con.execute(
                "SELECT DISTINCT lower(function_name), function_type, coalesce(macro_definition, '') "
                "FROM duckdb_functions() WHERE function_type IN ('scalar', 'aggregate', 'macro')").fetchall()
            denied = set(DENIED_FUNCTIONS)
            denied |= {n for n, _t, body in rows if re.search(r"\bselect\b|\bfrom\b|sleep", body, re.I)}
            _FUNCTIONS = (frozenset({n for n, _t, _b in rows} | _EXTRA_FUNCTIONS), frozenset(denied))
        return _FUNCTIONS


def _too_complex(why: str) -> QueryRefused:
    return QueryRefused("query_too_complex", f"The query is too complex to check: {why}.", TOO_COMPLEX_HINT)


class _Scope:
    """CTE names in scope, as chained frames (one per WITH clause) instead of copied dicts: a
    query with thousands of CTEs costs linear memory, not quadratic. `limit` hides the frame's
    CTEs from index `limit` on (CTE i sees only CTEs 0..i-1 of its own WITH)."""

    __slots__ = ("names", "limit", "parent")

    def __init__(self, names: dict[str, tuple[int, str]], limit: int | None, parent: _Scope | None) -> None:
        self.names, self.limit, self.parent = names, limit, parent

    def get(self, name: str) -> str | None:
        scope: _Scope | None = self
        while scope is not None:
            hit = scope.names.get(name)
            if hit is not None and (scope.limit is None or hit[0] < scope.limit):
                return hit[1]
            scope = scope.parent
        return None


_NO_CTES = _Scope({}, None, None)


def _refuse_table(parts: Iterable[str]) -> QueryRefused:
    shown = sanitize_message(".".join(p for p in parts if p), 120)
    return QueryRefused("table_not_found",
                        f"Table '{shown}' does not exist or you have no access to it. {NOT_FOUND_HINT}",
                        NOT_FOUND_HINT)


def _unknown(what: str) -> QueryRefused:
    return QueryRefused("query_not_allowed", f"This query uses a construct the guard does not know ({what}).",
                        "Rewrite it with plain SELECT/JOIN/WITH; unknown syntax is refused, never guessed.")


class _Walker:
    """One pass over a parse tree: checks every node, qualifies table references in place.

    CTEs are renamed to fresh names (`_agnes_cte_<n>`, the user's name kept as the alias), so
    a scoping rule modelled wrongly here can only make DuckDB fail to find a CTE -- never bind
    a CTE-looking name to a table nobody checked, and never tell "exists" from "no access".
    """

    def __init__(self, parser: _Parser, resolve: Resolver, can_read: Callable[[str], bool],
                 describe: Describer | None = None) -> None:
        self.parser, self.resolve, self.can_read, self.describe = parser, resolve, can_read, describe
        self.tables: set[str] = set()
        self.per_user = False
        self._recursive: dict[int, tuple[str, str]] = {}  # id(recursive node) -> (name, fresh name)
        self._fresh = itertools.count(1)
        self._ctes = 0

    def walk(self, tree: dict[str, Any]) -> set[str]:
        stack: list[tuple[Any, _Scope]] = [(tree["statements"], _NO_CTES)]
        nodes = 0
        try:
            while stack:
                node, scope = stack.pop()
                if isinstance(node, list):
                    stack.extend((item, scope) for item in node)
                elif isinstance(node, dict):
                    nodes += 1
                    if nodes > MAX_PARSE_NODES:
                        raise _too_complex(f"more than {MAX_PARSE_NODES:,} parse nodes")
                    self._visit(node, scope, stack)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:  # a shape we did not expect
            raise _unknown(type(exc).__name__) from exc
        except (MemoryError, RecursionError) as exc:  # refuse cleanly; the server lives on
            stack.clear()
            raise _too_complex("checking it ran out of memory") from exc
        return self.tables

    def _visit(self, d: dict[str, Any], scope: _Scope, stack: list[tuple[Any, _Scope]]) -> None:
        kind = d.get("type")
        if "class" in d:
            self._expression(d)
            if d["class"] == "CONSTANT":
                return
        elif "node" in d and "named_param_map" in d:
            if d["named_param_map"]:
                raise _parameters()
        elif isinstance(kind, str):
            if kind in _QUERY_NODES:
                self._query_node(d, scope, stack)
                return
            if kind in _TABLE_REFS:
                if not set(d) <= _TABLE_REFS[kind]:
                    raise _unknown(f"{kind} with {sorted(set(d) - _TABLE_REFS[kind])}")
                d = self._table_ref(d, scope)
            elif kind.endswith("_TYPE_INFO"):
                if kind in ("UNBOUND_TYPE_INFO", "USER_TYPE_INFO") and (d.get("catalog") or d.get("schema")):
                    raise QueryRefused("query_not_allowed", "Qualified type names are not allowed.")
            elif kind not in _OTHER_NODES:
                raise _unknown(kind)
        elif isinstance(kind, dict) and "is_null" in d:
            return  # a literal value
        stack.extend((v, scope) for v in d.values() if isinstance(v, dict | list))

    def _query_node(self, d: dict[str, Any], outer: _Scope, stack: list[tuple[Any, _Scope]]) -> None:
        """A WITH clause: CTE i sees the outer scope and CTEs 0..i-1; the body sees them all.
        A recursive CTE sees itself in its recursive (right) part only, as DuckDB binds it."""
        entries = d.get("cte_map", {}).get("map", [])
        if not entries:
            scope = outer
        else:
            self._ctes += len(entries)
            if self._ctes > MAX_CTES:
                raise _too_complex(f"more than {MAX_CTES} CTEs (WITH ... AS)")
            names: dict[str, tuple[int, str]] = {}
            scope = _Scope(names, None, outer)
        for index, entry in enumerate(entries):
            name, fresh = _lower(entry["key"]), f"_agnes_cte_{next(self._fresh)}"
            if name in names:
                raise _unknown("duplicate CTE name")
            body = entry["value"]["query"]["node"]
            if body.get("type") == "RECURSIVE_CTE_NODE":
                if _lower(body.get("cte_name", "")) != name:
                    raise _unknown("recursive CTE")
                self._recursive[id(body)] = (name, fresh)
                body["cte_name"] = fresh
            entry["key"] = fresh
            stack.append((entry["value"], _Scope(names, index, outer)))
            names[name] = (index, fresh)
        inner, skip = scope, {"cte_map"}
        if d["type"] == "RECURSIVE_CTE_NODE":
            if id(d) not in self._recursive:
                raise _unknown("recursive CTE")
            name, fresh = self._recursive[id(d)]
            inner, skip = _Scope({name: (0, fresh)}, None, scope), {"cte_map", "left"}
            stack.append((d["left"], scope))
        stack.extend((v, inner) for k, v in d.items() if k not in skip and isinstance(v, dict | list))

    def _table_ref(self, d: dict[str, Any], scope: _Scope) -> dict[str, Any]:
        kind = d["type"]
        if kind == "BASE_TABLE":
            if self._information_schema(d):
                return {}  # our own literal rows: nothing of the user's left in there to check
            self._base_table(d, scope)
            return {"at_clause": d.get("at_clause"), "sample": d.get("sample")}
        if kind == "TABLE_FUNCTION":
            fn = d["function"]
            name = _lower(fn.get("function_name", ""))
            if fn.get("class") != "FUNCTION" or name not in TABLE_FUNCTIONS or fn.get("catalog") or fn.get("schema"):
                raise QueryRefused("function_not_allowed",
                                   f"Table function '{sanitize_message(name, 80)}' is not allowed.",
                                   "Read tables by id (FROM source.table); only range, generate_series, unnest, "
                                   "json_each and json_tree may appear in FROM.")
            return {k: fn.get(k) for k in ("children", "filter", "order_bys")} | {"sample": d.get("sample")}
        if kind == "SHOW_REF":
            if d.get("show_type") not in ("DESCRIBE", "SUMMARY") or not d.get("query") or d.get("table_name"):
                raise QueryRefused("query_not_allowed", "SHOW lists are not available through SQL.", NOT_FOUND_HINT)
        if kind == "PIVOT" and any(p.get("pivot_enum") for p in d.get("pivots", ())):
            raise QueryRefused("query_not_allowed", "PIVOT needs an explicit IN list here.")
        return d

    def _information_schema(self, d: dict[str, Any]) -> bool:
        """`information_schema.tables|columns` -> a subquery of literal rows for the readable tables."""
        view = _lower(d["table_name"])
        if (self.describe is None or d.get("catalog_name") or _lower(d.get("schema_name", "")) != "information_schema"
                or view not in _INFO_COLUMNS or d.get("at_clause")):
            return False
        rows: list[tuple[Any, ...]] = []
        for tid, columns, description in self.describe():
            if not self.can_read(tid):
                continue
            source, name = tid.split(".", 1)
            if view == "tables":
                rows.append(("agnes", source, name, "BASE TABLE", description))
            else:
                rows.extend(("agnes", source, name, col, i, type_, "YES") for i, (col, type_) in enumerate(columns, 1))
        names = _INFO_COLUMNS[view]
        if rows:
            values = ", ".join("(" + ", ".join(_literal(v) for v in row) + ")" for row in rows)
            sql = f"SELECT * FROM (VALUES {values}) AS v({', '.join(names)})"
        else:
            typed = ("INTEGER" if n == "ordinal_position" else "VARCHAR" for n in names)
            sql = "SELECT " + ", ".join(f"NULL::{t} AS {n}" for n, t in zip(names, typed, strict=True)) + " WHERE false"
        subquery = self.parser.parse(sql)["statements"][0]
        alias = d.get("alias") or d["table_name"]
        replacement = {"type": "SUBQUERY", "alias": alias, "sample": d.get("sample"),
                       "query_location": d.get("query_location"), "subquery": subquery,
                       "column_name_alias": d.get("column_name_alias", [])}
        d.clear()
        d.update(replacement)
        self.per_user = True
        return True

    def _base_table(self, d: dict[str, Any], scope: _Scope) -> None:
        catalog, schema, name = d.get("catalog_name", ""), d.get("schema_name", ""), d["table_name"]
        cte = None if catalog or schema else scope.get(_lower(name))
        if cte is not None:
            d["table_name"], d["alias"] = cte, d.get("alias") or name
            return
        if not catalog and not schema and _FILE_LIKE.search(name):
            raise QueryRefused("query_not_allowed", "Reading files or URLs directly is not allowed.",
                               "Query a table by its id, e.g. SELECT * FROM source.table. " + NOT_FOUND_HINT)
        tid = None if catalog else self.resolve(schema or None, name)
        if tid is None or not self.can_read(tid):
            raise _refuse_table([catalog, schema, name])
        self.tables.add(tid)
        d["catalog_name"], (d["schema_name"], d["table_name"]) = "", tid.split(".", 1)

    def _expression(self, d: dict[str, Any]) -> None:
        cls = d["class"]
        if cls not in _EXPRESSIONS:
            raise _unknown(f"expression {cls}")
        if cls == "PARAMETER":
            raise _parameters()
        if cls not in ("FUNCTION", "WINDOW"):
            return
        name = _lower(d.get("function_name", ""))
        catalog, schema = _lower(d.get("catalog", "")), _lower(d.get("schema", ""))
        if (
            catalog not in ("", "system") or schema not in ("", "main", "pg_catalog")
            or name in self.parser.denied or name.startswith(_DENIED_PREFIXES) or name not in self.parser.functions
        ):
            raise QueryRefused("function_not_allowed",
                               f"Function '{sanitize_message(name, 80)}' does not exist or is not allowed in queries.",
                               "Use DuckDB's built-in scalar, aggregate and window functions; functions that read "
                               "files, settings, the environment or the catalog are refused. Read tables by id "
                               "(FROM source.table, as listed by GET /api/catalog/tables).")
        too_big = generated_size_error(name, d.get("children", []))
        if too_big:
            raise QueryRefused("function_not_allowed", too_big,
                               "Generate rows with the table function instead: SELECT * FROM range(n).")


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("\x00", "").replace("'", "''") + "'"


def _parameters() -> QueryRefused:
    return QueryRefused("query_not_allowed", "Query parameters ($1, ?, $name) are not supported.",
                        "Write the values into the SQL as literals, e.g. WHERE id = 42.")
