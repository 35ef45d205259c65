"""Helpers for the sources/registry/uploads tests: a real custom connector folder, audit reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CUSTOM_EXTRACTOR = '''\
"""Test connector: one table whose single row shows the config it got (never its secret)."""
import os

import pyarrow as pa

from agnes.extract import ExtractWriter, emit, read_context

ctx = read_context()
key = os.environ.get("MY_API_KEY", "")
with ExtractWriter(ctx.output_dir) as w:
    info = w.add_arrow("items", pa.table({"base_url": [ctx.config.get("base_url", "")],
                                          "key_length": [len(key)]}), description="Items")
    emit("table_done", table="items", rows=info.rows, bytes=info.size_bytes)
'''


def write_connector(custom_dir: Path, name: str = "my_api", requirements: str | None = None) -> Path:
    folder = custom_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "extractor.py").write_text(CUSTOM_EXTRACTOR)
    if requirements is not None:
        (folder / "requirements.txt").write_text(requirements)
    return folder


async def audit_rows(app: Any, prefix: str = "source_") -> list[tuple[str, str]]:
    async with app.state.instance.control.read() as conn:
        async with conn.execute("SELECT action, detail FROM audit_log ORDER BY id") as cur:
            return [(r[0], r[1]) for r in await cur.fetchall() if r[0].startswith(prefix)]


async def sql(app: Any, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    async with app.state.instance.control.transaction() as conn:
        async with conn.execute(query, params) as cur:
            return [tuple(r) for r in await cur.fetchall()]
