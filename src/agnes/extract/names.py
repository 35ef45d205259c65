"""Source and table names, as the extract contract defines them.

Names end up as DuckDB catalog and view names and in every table id
(`<source>.<table>`). The rules live in ONE place, `contract_tests.names`
(the frozen contract, runnable without agnes); this module is the SDK's and
the server's view of them, so the connector SDK, the server (configure,
inbox) and the validator can never disagree. Connectors normalise native
names with `normalize_table_name` and keep the native id elsewhere; two
native names that normalise alike must be reported, never merged.
"""

from __future__ import annotations

from contract_tests import names as _rules
from contract_tests import spec as _spec
from contract_tests.names import normalize_table_name

__all__ = [
    "MAX_TABLE_NAME",
    "RESERVED_SOURCE_NAMES",
    "RESERVED_TABLE_NAMES",
    "SOURCE_NAME_RE",
    "TABLE_NAME_RE",
    "check_remote_attach",
    "duckdb_keywords",
    "is_valid_source_name",
    "normalize_table_name",
    "source_name_problem",
    "table_name_problem",
    "validate_table_name",
]

TABLE_NAME_RE = _spec.TABLE_NAME_RE
SOURCE_NAME_RE = _spec.SOURCE_NAME_RE
MAX_TABLE_NAME = _spec.TABLE_NAME_MAX
#: DuckDB's own catalog/schema names and every keyword that is not `unreserved`.
RESERVED_SOURCE_NAMES = _spec.RESERVED_SOURCE_NAMES
#: Tables of the contract itself; a data table may not take their place.
RESERVED_TABLE_NAMES = _spec.RESERVED_TABLE_NAMES


def duckdb_keywords() -> frozenset[str]:
    """DuckDB keywords refused as source names (all but the `unreserved` ones)."""
    return _spec.DUCKDB_RESERVED_KEYWORDS


def source_name_problem(name: str) -> str | None:
    """Why `name` is not a valid source name (with the fix), or None."""
    problem = _rules.source_name_problem(name)
    return None if problem is None else problem.text


def is_valid_source_name(name: str) -> bool:
    return _rules.source_name_problem(name) is None


def table_name_problem(name: str) -> str | None:
    """Why `name` is not a valid `_meta.table_name` (with the fix), or None."""
    problem = _rules.table_name_problem(name)
    return None if problem is None else problem.text


def validate_table_name(name: str) -> str:
    """Return `name` or raise ValueError saying how to fix it."""
    problem = table_name_problem(name)
    if problem:
        raise ValueError(problem)
    return name


def check_remote_attach(alias: str, extension: str, url: str | None, token_env: str | None) -> None:
    """Validate one `_remote_attach` row; raise ValueError saying how to fix it (the secret masked)."""
    for problem in (
        _rules.alias_problem(alias),
        _rules.extension_problem(extension),
        _rules.url_problem(url),
        _rules.token_env_problem(token_env),
    ):
        if problem is None:
            continue
        if problem.code == "remote_attach_alias_invalid":
            raise ValueError(problem.text)  # the message names the alias already
        label = f"alias {alias!r}" if isinstance(alias, str) and alias else "_remote_attach"
        raise ValueError(f"{label}: {problem.text}")
