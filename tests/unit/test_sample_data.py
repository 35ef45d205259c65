"""The sample dataset is the same on every machine and Python version we support.

Docs, demos and the quickstart quote its numbers, so a change in the generator
(or in `random` across Python versions) must be a conscious one: update the
digests below and say so in the CHANGELOG.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal

from agnes.extract import sample_data

# sha256 of each table's rows as sorted-key JSON (values, not parquet bytes, so a
# pyarrow upgrade that changes the file encoding does not count as a change).
GOLDEN = {
    "customers": (2_000, "26b8ee4cfce05b41f24cab0b53e696434bd9abc75030bd3982b5feff7447d91a"),
    "products": (200, "3724506790640db604afc5bb05eac997c4f3ad74a268a42445f6faa169223a0e"),
    "orders": (10_000, "a730df5240882df62eaa107886c79c28d68fe35ab57703526b667f4bfcede0ad"),
}


def _digest(rows: list[dict]) -> str:
    return hashlib.sha256(json.dumps(rows, default=str, sort_keys=True).encode()).hexdigest()


def test_every_table_matches_its_golden_digest() -> None:
    tables = sample_data.generate()
    assert list(tables) == list(GOLDEN)
    for name, (rows, digest) in GOLDEN.items():
        assert tables[name].num_rows == rows, name
        assert _digest(tables[name].to_pylist()) == digest, f"sample table {name} changed"


def test_keys_join_and_totals_follow_the_documented_rule() -> None:
    tables = sample_data.generate()
    customers = set(tables["customers"].column("customer_id").to_pylist())
    products = {r["product_id"]: r["unit_price"] for r in tables["products"].to_pylist()}
    orders = tables["orders"].to_pylist()
    assert all(o["customer_id"] in customers for o in orders)
    assert all(o["product_id"] in products for o in orders)
    for o in orders:
        assert o["unit_price"] == products[o["product_id"]]
        expected = (o["unit_price"] * o["quantity"] * (100 - o["discount_pct"]) / 100).quantize(Decimal("0.01"))
        assert o["total"] == expected
    assert sum(o["total"] for o in orders) == Decimal("7079496.80")
