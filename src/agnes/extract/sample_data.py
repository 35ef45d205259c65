"""Deterministic sample data: customers, products, orders.

Generated in code (no committed data files) from a fixed seed and fixed
dates, so every run of the `sample` connector produces byte-identical
parquet: demos, docs and tests can rely on exact numbers. Columns cover the
common types (integers, decimals, floats, dates, timestamps, booleans,
strings, NULLs) and the tables join on keys.
"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from decimal import Decimal

import pyarrow as pa

SEED = 42
N_CUSTOMERS = 2_000
N_PRODUCTS = 200
N_ORDERS = 10_000

_FIRST = ["Ada", "Alan", "Grace", "Linus", "Margaret", "Dennis", "Barbara", "Ken", "Frances", "John",
          "Radia", "Edsger", "Katherine", "Tim", "Hedy", "Guido", "Anita", "Bjarne", "Sophie", "Niklaus"]
_LAST = ["Lovelace", "Turing", "Hopper", "Torvalds", "Hamilton", "Ritchie", "Liskov", "Thompson", "Allen",
         "Backus", "Perlman", "Dijkstra", "Johnson", "Berners-Lee", "Lamarr", "van Rossum", "Borg", "Wilson"]
_COUNTRIES = ["CZ", "DE", "US", "GB", "FR", "PL", "NL", "SK", "AT", "ES"]
_SEGMENTS = ["consumer", "smb", "enterprise"]
_CATEGORIES = ["books", "electronics", "garden", "kitchen", "sports", "toys"]
_ADJ = ["Compact", "Deluxe", "Eco", "Classic", "Smart", "Rugged", "Mini", "Pro", "Ultra", "Basic"]
_NOUN = ["Lamp", "Kettle", "Backpack", "Drone", "Notebook", "Speaker", "Planter", "Racket", "Puzzle", "Blender"]
_STATUSES = ["delivered"] * 6 + ["shipped"] * 2 + ["pending", "cancelled", "returned"]

_DAY0 = date(2019, 1, 1)
_ORDERS_FROM = datetime(2024, 1, 1)
_MONEY = pa.decimal128(12, 2)


def _cents(value: int) -> Decimal:
    return Decimal(value).scaleb(-2)


def _customers(rng: random.Random) -> pa.Table:
    rows = []
    for cid in range(1, N_CUSTOMERS + 1):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        signup = _DAY0 + timedelta(days=rng.randrange(5 * 365))
        rows.append({
            "customer_id": cid,
            "name": f"{first} {last}",
            "email": f"{first.lower()}.{last.lower().replace(' ', '')}{cid}@example.com",
            "country": rng.choice(_COUNTRIES),
            "segment": rng.choice(_SEGMENTS),
            "signup_date": signup,
            "is_active": rng.random() < 0.85,
            "credit_limit": _cents(rng.randrange(0, 5_000_000, 5_000)),
            "created_at": datetime.combine(signup, datetime.min.time()) + timedelta(seconds=rng.randrange(86_400)),
        })
    schema = pa.schema([
        ("customer_id", pa.int64()), ("name", pa.string()), ("email", pa.string()), ("country", pa.string()),
        ("segment", pa.string()), ("signup_date", pa.date32()), ("is_active", pa.bool_()),
        ("credit_limit", _MONEY), ("created_at", pa.timestamp("us")),
    ])
    return pa.Table.from_pylist(rows, schema=schema)


def _products(rng: random.Random) -> pa.Table:
    rows = []
    for pid in range(1, N_PRODUCTS + 1):
        rows.append({
            "product_id": pid,
            "sku": f"SKU-{pid:05d}",
            "name": f"{rng.choice(_ADJ)} {rng.choice(_NOUN)} {pid}",
            "category": rng.choice(_CATEGORIES),
            "unit_price": _cents(rng.randrange(199, 49_999)),
            "weight_kg": round(rng.uniform(0.05, 25.0), 3),
            "launched_on": _DAY0 + timedelta(days=rng.randrange(6 * 365)),
            "discontinued": rng.random() < 0.1,
        })
    schema = pa.schema([
        ("product_id", pa.int32()), ("sku", pa.string()), ("name", pa.string()), ("category", pa.string()),
        ("unit_price", pa.decimal128(10, 2)), ("weight_kg", pa.float64()), ("launched_on", pa.date32()),
        ("discontinued", pa.bool_()),
    ])
    return pa.Table.from_pylist(rows, schema=schema)


def _orders(rng: random.Random, prices: list[Decimal]) -> pa.Table:
    rows = []
    for oid in range(1, N_ORDERS + 1):
        pid = rng.randrange(1, N_PRODUCTS + 1)
        qty = rng.choice([1, 1, 1, 2, 2, 3, 5, 10])
        discount = rng.choice([0, 0, 0, 5, 10, 15])
        price = prices[pid - 1]
        total = (price * qty * (100 - discount) / 100).quantize(Decimal("0.01"))
        ordered = _ORDERS_FROM + timedelta(seconds=rng.randrange(366 * 86_400))
        status = rng.choice(_STATUSES)
        shipped = None if status in ("pending", "cancelled") else ordered.date() + timedelta(days=rng.randrange(1, 8))
        rows.append({
            "order_id": oid,
            "customer_id": rng.randrange(1, N_CUSTOMERS + 1),
            "product_id": pid,
            "ordered_at": ordered,
            "quantity": qty,
            "unit_price": price,
            "discount_pct": discount,
            "total": total,
            "status": status,
            "is_gift": rng.random() < 0.07,
            "shipped_on": shipped,
        })
    schema = pa.schema([
        ("order_id", pa.int64()), ("customer_id", pa.int64()), ("product_id", pa.int32()),
        ("ordered_at", pa.timestamp("us")), ("quantity", pa.int32()), ("unit_price", pa.decimal128(10, 2)),
        ("discount_pct", pa.int16()), ("total", _MONEY), ("status", pa.string()), ("is_gift", pa.bool_()),
        ("shipped_on", pa.date32()),
    ])
    return pa.Table.from_pylist(rows, schema=schema)


DESCRIPTIONS = {
    "customers": "Sample customers (2,000): one row per customer; key customer_id.",
    "products": "Sample product catalogue (200): key product_id; unit_price in EUR.",
    "orders": "Sample orders (10,000) in 2024: joins customers on customer_id and products on product_id; "
              "total = quantity * unit_price minus discount_pct. Timestamps are UTC.",
}


def generate() -> dict[str, pa.Table]:
    """All sample tables, in dependency order; identical on every call."""
    rng = random.Random(SEED)  # noqa: S311 - sample data, not security
    customers = _customers(rng)
    products = _products(rng)
    prices = products.column("unit_price").to_pylist()
    return {"customers": customers, "products": products, "orders": _orders(rng, prices)}
