"""The one implementation of the contract's name and `_remote_attach` rules.

The validator (`contract_tests.checks`), the connector SDK
(`agnes.extract.names`, `ExtractWriter`) and the server (configure, inbox)
all call these functions, so a value one of them accepts the others accept
too. Each check returns None when the value is fine, else a `Problem`: the
validator's violation code, what is wrong, and how to fix it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from .checks.secrets import is_env_var_name, looks_like_secret, mask, url_secret
from .spec import (
    ENV_VAR_NAME_RE,
    EXTENSION_RE,
    RESERVED_SOURCE_NAMES,
    RESERVED_TABLE_NAMES,
    SOURCE_NAME_RE,
    TABLE_NAME_MAX,
    TABLE_NAME_RE,
)

SOURCE_NAME_MAX = 63


@dataclass(frozen=True)
class Problem:
    """A broken rule: the validator's violation code, what is wrong, and the fix."""

    code: str
    message: str
    fix: str

    @property
    def text(self) -> str:
        """Message and fix in one sentence (what the SDK raises)."""
        return f"{self.message}; {self.fix}"


def suggest_name(name: str, limit: int = TABLE_NAME_MAX, prefix: str = "t_") -> str:
    """A valid name close to `name`: ASCII lowercase, [a-z0-9_] only, no leading digit."""
    text = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "unnamed"
    if text[0].isdigit():
        text = prefix + text
    return text[:limit].rstrip("_")


def normalize_table_name(native: str) -> str:
    """Map a native name to a contract table name.

    `in.c-crm.orders` -> `in_c_crm_orders`, `Orders 2024` -> `orders_2024`,
    `2024 sales` -> `t_2024_sales`, `Überweisungen` -> `uberweisungen`.
    Raises ValueError when nothing usable is left (e.g. `???`).
    """
    if not isinstance(native, str):
        raise ValueError(f"native table name must be a string, got {type(native).__name__}")
    text = unicodedata.normalize("NFKD", native).encode("ascii", "ignore").decode("ascii")
    if not re.sub(r"[^a-z0-9]+", "", text.lower()):
        raise ValueError(
            f"cannot derive a table name from {native!r}: it has no letters or digits; "
            "rename it (e.g. the file) to contain some"
        )
    return suggest_name(native)


def _table_name_shape(name: str) -> str:
    if len(name) > TABLE_NAME_MAX:
        return f"is {len(name)} characters long (at most {TABLE_NAME_MAX})"
    if name != name.lower():
        return "has uppercase letters"
    if name[:1].isdigit():
        return "starts with a digit"
    if not name:
        return "is empty"
    bad = sorted({c for c in name if not re.match(r"[a-z0-9_]", c)})
    return "contains " + " ".join(repr(c) for c in bad) if bad else "is not a valid table name"


def source_name_problem(name: object) -> Problem | None:
    """Source names become DuckDB catalog names, so they obey the identifier rules."""
    if not isinstance(name, str) or not SOURCE_NAME_RE.match(name):
        example = suggest_name(name, SOURCE_NAME_MAX, "s_") if isinstance(name, str) else "sales_csv"
        return Problem(
            "source_name_invalid",
            f"source name {name!r} does not match ^[a-z][a-z0-9_]{{0,62}}$",
            f"use lowercase letters, digits and _, starting with a letter, at most {SOURCE_NAME_MAX} characters, "
            f"e.g. {example!r}",
        )
    if name in RESERVED_SOURCE_NAMES:
        return Problem(
            "source_name_reserved",
            f"source name {name!r} is reserved (a DuckDB catalog/schema name or keyword)",
            f"pick another name, e.g. {name + '_src'!r}",
        )
    return None


def table_name_problem(name: object) -> Problem | None:
    """Why `name` is not a valid `_meta.table_name`, or None."""
    if not isinstance(name, str) or not TABLE_NAME_RE.match(name):
        shape = _table_name_shape(name) if isinstance(name, str) else f"is a {type(name).__name__}"
        fixed = suggest_name(name) if isinstance(name, str) else "orders"
        return Problem(
            "table_name_invalid",
            f"table name {name!r} {shape}; names must match ^[a-z_][a-z0-9_]{{0,127}}$",
            f"normalise it to {fixed!r} (normalize_table_name()) in _meta and in the data (data/{fixed}.parquet "
            "or the table name), and keep the native name in your own bookkeeping",
        )
    if name in RESERVED_TABLE_NAMES:
        other = name.lstrip("_") + "_data"
        return Problem(
            "table_name_invalid",
            f"table name {name!r} is reserved by the extract contract (it is one of its own tables)",
            f"name the data table differently, e.g. {other!r}",
        )
    return None


def alias_problem(alias: object) -> Problem | None:
    """`_remote_attach.alias` becomes an ATTACH (catalog) name: the source-name rules apply."""
    if not isinstance(alias, str) or not alias:
        problem = "alias is empty"
    elif not SOURCE_NAME_RE.match(alias):
        problem = f"alias {alias!r} does not match ^[a-z][a-z0-9_]{{0,62}}$"
    elif alias in RESERVED_SOURCE_NAMES:
        problem = f"alias {alias!r} is a reserved DuckDB name (a catalog/schema name or keyword)"
    else:
        return None
    return Problem(
        "remote_attach_alias_invalid",
        problem,
        "give every ATTACH a unique lowercase alias such as 'kbc' or 'pg', and use it in the views",
    )


def extension_problem(extension: object) -> Problem | None:
    """`_remote_attach.extension` is the DuckDB extension that ATTACHes the alias."""
    if not isinstance(extension, str) or not extension:
        return Problem(
            "remote_attach_extension_missing",
            "extension is empty",
            "set extension to the DuckDB extension that ATTACHes it, e.g. 'postgres', 'sqlite', 'bigquery'",
        )
    if not EXTENSION_RE.match(extension):
        shown = mask(extension) if looks_like_secret(extension) else repr(extension)
        return Problem(
            "remote_attach_extension_invalid",
            f"extension {shown} is not a DuckDB extension name ({EXTENSION_RE.pattern})",
            "set extension to the DuckDB extension that ATTACHes it, e.g. 'postgres', 'sqlite', 'bigquery'",
        )
    return None


def url_problem(url: object) -> Problem | None:
    """`_remote_attach.url` is a connection string without the secret (NULL is allowed)."""
    if url is None:
        return None
    masked = url_secret(url) if isinstance(url, str) else f"a {type(url).__name__}, not a string"
    if masked is None:
        return None
    return Problem(
        "url_contains_secret",
        f"url contains a secret (password=, token=, user:pass@ …): {masked}",
        "remove the secret from the url, store it in an environment variable and put that variable's NAME "
        "in token_env; then rotate the leaked secret",
    )


def token_env_problem(value: object) -> Problem | None:
    """`_remote_attach.token_env` is the NAME of an env var (or NULL), never the secret itself."""
    if value is None:
        return None
    if isinstance(value, str) and is_env_var_name(value):
        return None
    if isinstance(value, str) and value and (
        looks_like_secret(value) or not value.upper().replace("-", "_").isidentifier()
    ):
        return Problem(
            "token_env_secret",
            f"token_env holds what looks like a secret ({mask(value)}), not the NAME of an environment variable",
            "store the secret in an environment variable and put only its NAME in token_env "
            "(e.g. 'PG_PASSWORD'); treat the leaked value as compromised and rotate it",
        )
    shown = mask(value) if isinstance(value, str) else f"a {type(value).__name__}"
    return Problem(
        "token_env_invalid",
        f"token_env ({shown}) is not the NAME of an environment variable matching {ENV_VAR_NAME_RE.pattern}",
        "use an uppercase env-var NAME such as 'PG_PASSWORD' (letters, digits, _), or NULL when no secret is needed",
    )
