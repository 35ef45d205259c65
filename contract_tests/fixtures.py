"""A valid example extract, built for tests and as a template for connector authors.

It uses every local data form the contract allows (one parquet file, one
partitioned folder, one base table) and, on request, a remote view, so tests
can break exactly one thing and expect exactly one violation.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from .spec import META_SQL, REMOTE_ATTACH_SQL

#: Tables of the example and their row counts.
VALID_TABLES = {"orders": 3, "events": 5, "customers": 4}
REMOTE_TABLE = "remote_orders"
REMOTE_ALIAS = "pg"


def build_valid_extract(
    path: Path,
    *,
    remote: bool = False,
    extracted_at: datetime | None = None,
) -> Path:
    """Write a contract-valid extract folder at `path` and return it.

    - `data/orders.parquet` (3 rows), with a standalone view `orders` over it
    - `data/events/part-0.parquet` + `part-1.parquet` (2 + 3 rows)
    - base table `customers` (4 rows) inside extract.duckdb
    - with `remote=True`: `_remote_attach` row for alias `pg` and a view
      `remote_orders` reading `pg.public.orders`

    `extracted_at` defaults to one hour ago, naive UTC as the contract says.
    """
    path = Path(path)
    data = path / "data"
    (data / "events").mkdir(parents=True, exist_ok=True)
    when = extracted_at or (datetime.now(UTC) - timedelta(hours=1)).replace(tzinfo=None)

    orders = pa.table({"id": [1, 2, 3], "customer_id": [10, 11, 10], "amount": [9.5, 20.0, 3.25]})
    pq.write_table(orders, data / "orders.parquet")
    pq.write_table(pa.table({"id": [1, 2], "kind": ["view", "click"]}), data / "events" / "part-0.parquet")
    pq.write_table(pa.table({"id": [3, 4, 5], "kind": ["view", "view", "buy"]}), data / "events" / "part-1.parquet")
    sizes = {
        "orders": (data / "orders.parquet").stat().st_size,
        "events": sum(f.stat().st_size for f in (data / "events").glob("*.parquet")),
        "customers": None,
    }

    con = duckdb.connect(str(path / "extract.duckdb"))
    try:
        con.execute(META_SQL.read_text(encoding="utf-8"))
        con.execute(
            "CREATE TABLE customers AS SELECT * FROM (VALUES (10, 'Ada'), (11, 'Bo'), (12, 'Cy'), (13, 'Di')) "
            "t(id, name)"
        )
        # For standalone use only; the engine and the validator never run it.
        con.execute(f"CREATE VIEW orders AS SELECT * FROM read_parquet('{(data / 'orders.parquet').as_posix()}')")
        descriptions = {"orders": "Orders (one file)", "events": "Events (partitioned)", "customers": "Customers"}
        for name, rows in VALID_TABLES.items():
            con.execute(
                "INSERT INTO _meta VALUES (?, ?, ?, ?, ?, 'local')",
                [name, descriptions[name], rows, sizes[name], when],
            )
        if remote:
            _add_remote(con, when)
    finally:
        con.close()
    return path


def _add_remote(con: duckdb.DuckDBPyConnection, when: datetime) -> None:
    """A remote view must bind when created: attach a stand-in under the alias, then detach."""
    con.execute(REMOTE_ATTACH_SQL.read_text(encoding="utf-8"))
    con.execute(
        "INSERT INTO _remote_attach VALUES (?, 'postgres', 'postgresql://db.example.com:5432/shop', 'PG_PASSWORD')",
        [REMOTE_ALIAS],
    )
    con.execute(f"ATTACH ':memory:' AS {REMOTE_ALIAS}")
    con.execute(f"CREATE SCHEMA {REMOTE_ALIAS}.public")
    con.execute(f"CREATE TABLE {REMOTE_ALIAS}.public.orders (id INTEGER, amount DOUBLE)")
    con.execute(f"CREATE VIEW {REMOTE_TABLE} AS SELECT id, amount FROM {REMOTE_ALIAS}.public.orders")
    con.execute(f"DETACH {REMOTE_ALIAS}")
    con.execute(
        "INSERT INTO _meta VALUES (?, 'Orders, read live from Postgres', NULL, NULL, ?, 'remote')",
        [REMOTE_TABLE, when],
    )
