"""Keboola column metadata -> DuckDB/Parquet types.

Keboola stores every value as text; the declared type lives in column
metadata (`KBC.datatype.basetype`, `.type`, `.length`), possibly from several
providers - an admin's `user` metadata wins over the backend's. Discovery and
the extractor use this one mapping, so a registered table's columns are what
the published parquet holds.
"""

from __future__ import annotations

import re
from typing import Any

BASE = {"INTEGER": "BIGINT", "FLOAT": "DOUBLE", "BOOLEAN": "BOOLEAN", "DATE": "DATE", "TIMESTAMP": "TIMESTAMP",
        "STRING": "VARCHAR", "NUMERIC": "DECIMAL"}
DEFAULT_DECIMAL = (38, 9)
_TZ = re.compile(r"(?<!N)TZ\b|WITH TIME ZONE|TIMESTAMPTZ", re.I)


def _metadata(entries: Any) -> dict[str, str]:
    """key -> value, `user` provider first, then the others in their order."""
    if not isinstance(entries, list):
        return {}
    ordered = sorted((e for e in entries if isinstance(e, dict)), key=lambda e: e.get("provider") != "user")
    found: dict[str, str] = {}
    for e in ordered:
        key, value = e.get("key"), e.get("value")
        if isinstance(key, str) and value is not None and key not in found:
            found[key] = str(value)
    return found


def _decimal(length: str | None) -> str:
    precision, scale = DEFAULT_DECIMAL
    if length:
        parts = [p.strip() for p in length.split(",")]
        try:
            precision = int(parts[0])
            scale = int(parts[1]) if len(parts) > 1 and parts[1] else 0
        except ValueError:
            precision, scale = DEFAULT_DECIMAL
    if not 1 <= precision <= 38 or not 0 <= scale <= precision:
        return "DOUBLE"  # wider than Parquet decimals hold exactly: keep the value, lose only digits past 15
    return f"DECIMAL({precision},{scale})"


def column_type(meta_entries: Any) -> str:
    """The DuckDB type for one column's metadata list (VARCHAR when nothing is declared)."""
    meta = _metadata(meta_entries)
    base = (meta.get("KBC.datatype.basetype") or "STRING").upper()
    native = meta.get("KBC.datatype.type") or ""
    if base == "NUMERIC":
        return _decimal(meta.get("KBC.datatype.length"))
    if base == "TIMESTAMP" and _TZ.search(native):
        return "TIMESTAMP WITH TIME ZONE"
    return BASE.get(base, "VARCHAR")


def table_types(table: dict[str, Any]) -> list[tuple[str, str]]:
    """[(column, DuckDB type)] in the table's column order."""
    columns = [str(c) for c in table.get("columns") or []]
    meta = table.get("columnMetadata") or {}
    if not isinstance(meta, dict):
        meta = {}
    return [(c, column_type(meta.get(c))) for c in columns]


def description(table: dict[str, Any]) -> str | None:
    """KBC.description from the table's metadata, else its display name and bucket."""
    meta = _metadata(table.get("metadata"))
    if meta.get("KBC.description"):
        return meta["KBC.description"]
    return f"Keboola table {table.get('id')}" if table.get("id") else None
