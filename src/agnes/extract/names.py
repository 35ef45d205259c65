"""Source and table names, as the extract contract defines them.

Names end up as DuckDB catalog and view names and in every table id
(`<source>.<table>`), so they are checked in one place. Connectors normalise
native names with `normalize_table_name` and keep the native id elsewhere;
two native names that normalise alike must be reported, never merged.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

TABLE_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,127}$")
SOURCE_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
MAX_TABLE_NAME = 128

# Names DuckDB already uses for catalogs/schemas of its own.
RESERVED_SOURCE_NAMES = frozenset({"main", "system", "temp", "memory", "information_schema", "pg_catalog"})
# Tables of the contract itself; a data table may not take their place.
RESERVED_TABLE_NAMES = frozenset({"_meta", "_remote_attach"})

ALIAS_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
EXTENSION_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
ENV_NAME_RE = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")
# A connection string must name the secret's env var, never carry the secret.
_SECRET_IN_URL_RE = re.compile(
    r"(password|passwd|pwd|token|secret|api_key|apikey)\s*=|://[^/@\s]*:[^/@\s]+@", re.IGNORECASE
)


@lru_cache(maxsize=1)
def duckdb_keywords() -> frozenset[str]:
    """Keywords that cannot be a bare identifier in DuckDB.

    Only `unreserved` keywords are allowed: `sample`, `csv` or `data` are
    unreserved and are perfectly good source names.
    """
    import duckdb

    con = duckdb.connect()
    try:
        rows = con.execute(
            "SELECT keyword_name FROM duckdb_keywords() WHERE keyword_category <> 'unreserved'"
        ).fetchall()
    finally:
        con.close()
    return frozenset(r[0].lower() for r in rows)


def source_name_problem(name: str) -> str | None:
    """Why `name` is not a valid source name, or None."""
    if not isinstance(name, str) or not SOURCE_NAME_RE.match(name):
        return (
            f"source name {name!r} must match ^[a-z][a-z0-9_]{{0,62}}$ "
            "(lowercase letter first, then lowercase letters, digits or _; at most 63 characters)"
        )
    if name in RESERVED_SOURCE_NAMES or name in duckdb_keywords():
        return f"source name {name!r} is reserved by DuckDB; pick another, e.g. {name}_src"
    return None


def is_valid_source_name(name: str) -> bool:
    return source_name_problem(name) is None


def table_name_problem(name: str) -> str | None:
    """Why `name` is not a valid `_meta.table_name`, or None."""
    if not isinstance(name, str) or not TABLE_NAME_RE.match(name):
        hint = ""
        if isinstance(name, str) and name:
            try:
                hint = f"; use normalize_table_name() -> {normalize_table_name(name)!r}"
            except ValueError:
                pass
        return f"table name {name!r} must match ^[a-z_][a-z0-9_]{{0,127}}${hint}"
    if name in RESERVED_TABLE_NAMES:
        return f"table name {name!r} is reserved by the extract contract; pick another"
    return None


def validate_table_name(name: str) -> str:
    """Return `name` or raise ValueError saying how to fix it."""
    problem = table_name_problem(name)
    if problem:
        raise ValueError(problem)
    return name


def normalize_table_name(native: str) -> str:
    """Map a native name to a contract table name.

    `in.c-crm.orders` -> `in_c_crm_orders`, `Orders 2024` -> `orders_2024`,
    `2024 sales` -> `t_2024_sales`, `Überweisungen` -> `uberweisungen`.
    Raises ValueError when nothing usable is left (e.g. `???`).
    """
    if not isinstance(native, str):
        raise ValueError(f"native table name must be a string, got {type(native).__name__}")
    text = unicodedata.normalize("NFKD", native).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    if not text:
        raise ValueError(
            f"cannot derive a table name from {native!r}: it has no letters or digits; "
            "rename it (e.g. the file) to contain some"
        )
    if text[0].isdigit():
        text = "t_" + text
    text = text[:MAX_TABLE_NAME].rstrip("_")
    if text in RESERVED_TABLE_NAMES:  # pragma: no cover - leading _ is stripped above
        text = "t" + text
    return text


def check_remote_attach(alias: str, extension: str, url: str, token_env: str | None) -> None:
    """Validate one `_remote_attach` row; raise ValueError saying how to fix it."""
    if not isinstance(alias, str) or not ALIAS_RE.match(alias) or alias in RESERVED_SOURCE_NAMES:
        reserved = ", ".join(sorted(RESERVED_SOURCE_NAMES))
        raise ValueError(f"alias {alias!r} must match ^[a-z_][a-z0-9_]{{0,62}}$ and not be: {reserved}")
    if not isinstance(extension, str) or not EXTENSION_RE.match(extension):
        raise ValueError(f"extension {extension!r} must be a DuckDB extension name such as 'postgres'")
    if not isinstance(url, str) or _SECRET_IN_URL_RE.search(url):
        raise ValueError(
            f"alias {alias!r}: the url looks like it contains a secret (password=, token=, user:pass@); "
            "remove it and put the NAME of the env var that holds it in token_env"
        )
    if token_env is not None and (not isinstance(token_env, str) or not ENV_NAME_RE.match(token_env)):
        raise ValueError(
            "token_env must be the NAME of an environment variable (e.g. 'PG_PASSWORD'), never the secret "
            "itself; it must match ^[A-Z_][A-Z0-9_]*$"
        )
