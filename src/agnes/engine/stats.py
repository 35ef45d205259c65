"""Column statistics of one served table, as ONE aggregate query.

The query is plain SQL over `"source"."table"`, so the catalog service sends it
through the same guard and sandboxed executor as user SQL (time limit,
concurrency cap) instead of opening files itself. min/max are cut to 100
characters and given as text: they are for a reader, not for arithmetic.
"""

from __future__ import annotations

import re
from typing import Any

from agnes.engine.connection import quote_ident

MAX_COLUMNS = 200  # wider tables get statistics for their first 200 columns
_NO_ORDER = re.compile(r"\[|^(STRUCT|MAP|UNION|BLOB|BIT|VARIANT|GEOMETRY)\b", re.I)


def has_order(type_: str) -> bool:
    """Whether min/max/distinct make sense for a column of this DuckDB type."""
    return not _NO_ORDER.search(type_)


def stats_sql(table_id: str, columns: list[tuple[str, str]]) -> str:
    source, table = table_id.split(".", 1)
    parts = ["count(*)"]
    for name, type_ in columns[:MAX_COLUMNS]:
        col = quote_ident(name)
        parts.append(f"count({col})")
        if has_order(type_):
            parts += [f"approx_count_distinct({col})", f"left(CAST(min({col}) AS VARCHAR), 100)",
                      f"left(CAST(max({col}) AS VARCHAR), 100)"]
    return f"SELECT {', '.join(parts)} FROM {quote_ident(source)}.{quote_ident(table)}"


def parse_stats(row: list[Any], columns: list[tuple[str, str]]) -> tuple[int, dict[str, dict[str, Any]]]:
    """(row count, column name -> {non_null, nulls, distinct_approx, min, max}) from `stats_sql`'s row."""
    total, values, out = int(row[0]), iter(row[1:]), {}
    for name, type_ in columns[:MAX_COLUMNS]:
        non_null = int(next(values))
        stats: dict[str, Any] = {"non_null": non_null, "nulls": total - non_null, "distinct_approx": None,
                                 "min": None, "max": None}
        if has_order(type_):
            stats["distinct_approx"], stats["min"], stats["max"] = next(values), next(values), next(values)
        out[name] = stats
    return total, out


def sample_sql(table_id: str, rows: int = 5) -> str:
    source, table = table_id.split(".", 1)
    return f"SELECT * FROM {quote_ident(source)}.{quote_ident(table)} LIMIT {int(rows)}"
