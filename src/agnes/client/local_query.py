"""`agnes query` on the local copy: the analyst's own DuckDB file, opened read-only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agnes.client.api import ClientError
from agnes.client.local import DATABASE


def run_local(root: Path, sql: str, limit: int | None, *, csv: bool = False) -> dict[str, Any] | bytes:
    """The result as the API's JSON shape, or CSV bytes."""
    import duckdb

    from agnes.engine.encode import CsvEncoder, rows_of

    db = root / DATABASE
    if not db.is_file():
        raise ClientError("no_local_data", f"No pulled data in {root}.",
                          "Run `agnes pull` first, or query the server with `agnes query --remote`.")
    con = duckdb.connect(str(db), read_only=True, config={"python_enable_replacements": "false"})
    try:
        relation = con.sql(sql)
        if relation is None:
            raise ClientError("not_a_query", "The statement returns no rows.", "Send a SELECT.")
        columns = [{"name": n, "type": str(t)} for n, t in zip(relation.columns, relation.types, strict=True)]
        cut = relation.limit(limit + 1) if limit is not None else relation
        table = cut.to_arrow_table()
    except duckdb.Error as exc:
        raise ClientError("query_failed", str(exc).splitlines()[0],
                          "Tables are source.table (see `agnes catalog`); run `agnes pull` to refresh.") from None
    finally:
        con.close()
    truncated = limit is not None and table.num_rows > limit
    table = table.slice(0, limit) if limit is not None else table
    if csv:
        encoder = CsvEncoder()
        return encoder.header(table.schema) + b"".join(encoder.encode(b) for b in table.to_batches())
    rows = rows_of(table, [c["type"] for c in columns])
    return {"columns": columns, "rows": rows, "row_count": table.num_rows, "truncated": truncated}
