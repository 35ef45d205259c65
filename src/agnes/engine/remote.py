"""Remote (pass-through) tables: attaching `_remote_attach` rows and re-aiming their views.

Each source's aliases are attached under a catalog-wide unique name
(`_r_<source>_<alias>_<hash>`), so two sources may both call their database
`pg`. The extract's view SQL is therefore rewritten: DuckDB's own parser
(`json_serialize_sql`) gives the tree, every table reference must name a
declared alias (or a CTE), the catalog name is replaced in the tree and
`json_deserialize_sql` prints it back. No regex ever touches user SQL.

Secrets never go into the ATTACH string: `duckdb_databases().path` shows that
string to anyone who can query. They go into a TEMPORARY SECRET (shown
redacted) that the ATTACH names.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import duckdb
from contract_tests.names import alias_problem, extension_problem

from agnes.engine.connection import quote_ident, sql_literal

# Extensions whose secret is a password merged into the connection string.
_PASSWORD_SECRET_TYPES = {"postgres": "postgres", "mysql": "mysql"}


class RemoteError(Exception):
    """A remote declaration or view that Agnes refuses (message says what to fix)."""


@dataclass(frozen=True)
class RemoteSpec:
    """One `_remote_attach` row plus the catalog-wide name it is attached under."""

    source: str
    alias: str
    extension: str
    url: str
    token_env: str | None

    @property
    def catalog_alias(self) -> str:
        digest = hashlib.sha1(  # noqa: S324 -- a name, not security
            json.dumps([self.extension, self.url, self.token_env]).encode()
        ).hexdigest()[:8]
        return f"_r_{self.source}_{self.alias}_{digest}"


def read_remote_specs(con: duckdb.DuckDBPyConnection, x_alias: str, source: str) -> list[RemoteSpec]:
    """Rows of the `_remote_attach` table of an attached extract."""
    rows = con.execute(
        f"SELECT alias, extension, url, token_env FROM {quote_ident(x_alias)}.main._remote_attach"
    ).fetchall()
    specs: list[RemoteSpec] = []
    for alias, extension, url, token_env in rows:
        problem = alias_problem(alias) or extension_problem(extension)  # the contract's rules, one copy
        if problem:
            raise RemoteError(f"_remote_attach alias {alias!r}: {problem.text}")
        specs.append(RemoteSpec(source, alias, extension, url or "", token_env or None))
    if len({s.alias for s in specs}) != len(specs):
        raise RemoteError("_remote_attach declares the same alias twice")
    return specs


def attach_statements(spec: RemoteSpec, environ: Mapping[str, str] | None = None) -> list[str]:
    """SQL to attach one remote alias READ_ONLY, with its secret from `token_env`."""
    environ = os.environ if environ is None else environ
    alias = spec.catalog_alias
    url = spec.url
    statements: list[str] = []
    options = [f"TYPE {spec.extension}", "READ_ONLY"]
    if spec.token_env:
        secret_type = _PASSWORD_SECRET_TYPES.get(spec.extension)
        if secret_type is None:
            raise RemoteError(
                f"alias {spec.alias!r}: Agnes does not know how to pass a secret to the "
                f"{spec.extension!r} extension; leave token_env empty or use postgres/mysql"
            )
        secret = environ.get(spec.token_env)
        if not secret:
            raise RemoteError(
                f"alias {spec.alias!r} needs the secret in env var {spec.token_env} (token_env), "
                "which is not set in the serving process"
            )
        if url.startswith(("postgres://", "postgresql://")):
            url = libpq_from_uri(url)
        secret_name = f"{alias}_secret"
        statements.append(
            f"CREATE OR REPLACE TEMPORARY SECRET {quote_ident(secret_name)} "
            f"(TYPE {secret_type}, PASSWORD {sql_literal(secret)})"
        )
        options.append(f"SECRET {quote_ident(secret_name)}")
    statements.append(f"ATTACH {sql_literal(url)} AS {quote_ident(alias)} ({', '.join(options)})")
    return statements


def libpq_from_uri(uri: str) -> str:
    """`postgresql://user@host:5432/db?sslmode=require` -> libpq key=value form.

    DuckDB merges a secret into key=value strings only; a URI plus a secret fails.
    """
    parts = urlsplit(uri)
    pairs: list[tuple[str, str]] = []
    if parts.hostname:
        pairs.append(("host", parts.hostname))
    if parts.port:
        pairs.append(("port", str(parts.port)))
    if parts.username:
        pairs.append(("user", unquote(parts.username)))
    if parts.password:
        raise RemoteError("the remote url must not contain a password; put it in the env var named by token_env")
    if parts.path.strip("/"):
        pairs.append(("dbname", unquote(parts.path.strip("/"))))
    pairs.extend(parse_qsl(parts.query))
    return " ".join(f"{key}={_libpq_value(value)}" for key, value in pairs)


def _libpq_value(value: str) -> str:
    if value and not re.search(r"[\s'\\]", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def view_query(create_sql: str, view_name: str) -> str:
    """The SELECT of a stored `CREATE VIEW <name> AS <select>;` (DuckDB's normalized text)."""
    sql = create_sql.strip().rstrip(";").strip()
    for name in (view_name, quote_ident(view_name)):
        for prefix in (f"CREATE VIEW {name} AS ", f"CREATE VIEW main.{name} AS "):
            if sql.startswith(prefix):
                return sql[len(prefix) :]
    raise RemoteError(
        f"view {view_name!r}: cannot read its query (column aliases in CREATE VIEW are not supported); "
        "define it as CREATE VIEW name AS SELECT ..."
    )


def rewrite_remote_query(con: duckdb.DuckDBPyConnection, query: str, aliases: Mapping[str, str]) -> str:
    """Re-aim a remote view's SELECT at the catalog-wide aliases, refusing anything else."""
    raw = con.execute("SELECT json_serialize_sql(?)", [query]).fetchone()[0]
    tree = json.loads(raw)
    if tree.get("error"):
        raise RemoteError(f"view query does not parse as one SELECT: {tree.get('error_message')}")
    if len(tree.get("statements", [])) != 1:
        raise RemoteError("a remote view must be exactly one SELECT statement")
    ctes: set[str] = set()
    _collect_ctes(tree, ctes)
    _rewrite(tree, aliases, ctes)
    return con.execute("SELECT json_deserialize_sql(?)", [json.dumps(tree)]).fetchone()[0]


def _collect_ctes(node: Any, out: set[str]) -> None:
    if isinstance(node, dict):
        cte_map = node.get("cte_map")
        if isinstance(cte_map, dict):
            out.update(entry["key"] for entry in cte_map.get("map", []))
        for value in node.values():
            _collect_ctes(value, out)
    elif isinstance(node, list):
        for value in node:
            _collect_ctes(value, out)


def _rewrite(node: Any, aliases: Mapping[str, str], ctes: set[str]) -> None:
    if isinstance(node, list):
        for value in node:
            _rewrite(value, aliases, ctes)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if kind == "TABLE_FUNCTION":
        raise RemoteError("remote views may not call table functions; select from the declared alias")
    if kind == "BASE_TABLE":
        catalog, schema, table = node["catalog_name"], node["schema_name"], node["table_name"]
        if catalog:
            if catalog not in aliases:
                raise RemoteError(f"view reads {catalog}.{schema}.{table}, but {catalog!r} is not in _remote_attach")
            node["catalog_name"] = aliases[catalog]
        elif schema in aliases:  # `pg.table`: the alias with its default schema
            node["catalog_name"], node["schema_name"] = aliases[schema], ""
        elif schema or table not in ctes:
            name = f"{schema}.{table}" if schema else table
            raise RemoteError(f"view reads {name!r}, which is not under an alias declared in _remote_attach")
    for value in node.values():
        _rewrite(value, aliases, ctes)
