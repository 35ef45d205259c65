"""A real serving catalog with two sources; the test "user" may read only source `alpha`.

`beta` holds data whose values (`TOPSECRET-...`) must never show up in an answer or an
error sent to that user. Extracts are written with the connector SDK (`ExtractWriter`)
and published like any run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from agnes.engine import publish as pub
from agnes.engine.catalog import ServingCatalog
from agnes.engine.connection import ConnectionPolicy
from agnes.engine.query import QueryExecutor
from agnes.extract.writer import ExtractWriter

SECRET = "TOPSECRET"


def publish_source(extracts: Path, source: str, tables: dict[str, pa.Table]) -> Path:
    staging = pub.new_staging_dir(extracts, source)
    with ExtractWriter(staging) as writer:
        for name, table in tables.items():
            writer.add_arrow(name, table, description=f"{source} {name}")
    return pub.publish(extracts, source, staging).path


def alpha_tables() -> dict[str, pa.Table]:
    return {
        "orders": pa.table({"id": [1, 2, 3, 4], "customer_id": [10, 11, 10, 12], "amount": [9.5, 20.0, 3.25, 7.0]}),
        "customers": pa.table({"id": [10, 11, 12], "name": ["Ann", "Bob", "Cid"]}),
        "shared": pa.table({"id": [1], "origin": ["alpha"]}),
    }


def beta_tables() -> dict[str, pa.Table]:
    return {
        "salaries": pa.table({"id": [1, 2], "salary": [f"{SECRET}-1", f"{SECRET}-2"]}),
        "shared": pa.table({"id": [1], "origin": [f"{SECRET}-shared"]}),
        "vault": pa.table({"id": [7], "code": [f"{SECRET}-vault"]}),
    }


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServingCatalog]:
    root = tmp_path_factory.mktemp("security")
    extracts = root / "extracts"
    extracts.mkdir()
    publish_source(extracts, "alpha", alpha_tables())
    publish_source(extracts, "beta", beta_tables())
    policy = ConnectionPolicy(threads=2, memory_limit="256MB", max_temp_directory_size="256MB",
                              temp_directory=root / "analytics" / "tmp")
    cat = ServingCatalog(extracts, policy)
    report = cat.sync_sources(pub.published_runs(extracts))
    assert report.errors == {} and sorted(report.attached) == ["alpha", "beta"]
    yield cat
    cat.close()


@pytest.fixture
def executor(catalog: ServingCatalog) -> Iterator[QueryExecutor]:
    ex = QueryExecutor(catalog, max_concurrency=2, timeout_s=5.0, max_rows=100, queue_size=2,
                       queue_timeout_s=1.0, stream_max_rows=1000, batch_rows=10)
    yield ex
    ex.close()


def alpha_only(table_id: str) -> bool:
    return table_id.startswith("alpha.")
