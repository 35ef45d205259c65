"""Sync and catalog benchmarks (issue: data plane). Not a gate: results go to docs/perf/.

1. Ingest: a generated N-row CSV through the CSV connector end to end (subprocess,
   contract validation, atomic publish) vs a bare DuckDB
   `COPY (SELECT * FROM read_csv(...)) TO 'x.parquet'` on the same file, same run.
   Aim: Agnes <= 1.3x the bare COPY.
2. Catalog: a full load of S sources x T tables into the serving catalog.
   Aim: 10,000 tables < 5 s.
3. Re-publish: one source gets a new run; time for the catalog to serve it.
   Aim: < 200 ms.

Usage: .venv/bin/python bench/sync_bench.py [--rows 10000000] [--sources 50] [--tables 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
from contract_tests import validate_extract

from agnes.engine.catalog import ServingCatalog
from agnes.engine.publish import new_staging_dir, publish, published_runs
from agnes.extract.runner import find_connector, run_connector

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "perf"


def make_csv(path: Path, rows: int) -> None:
    with duckdb.connect() as con:
        con.execute(f"""
            COPY (
              SELECT i AS id, (i % 5000)::INTEGER AS customer_id, round((i % 100000) / 100.0, 2) AS amount,
                     DATE '2024-01-01' + (i % 700)::INTEGER AS order_date,
                     TIMESTAMP '2024-01-01 00:00:00' + to_seconds(i % 86400000) AS created_at,
                     (i % 3 = 0) AS paid, 'note ' || (i % 997) AS note
              FROM range({rows}) t(i)
            ) TO '{path}' (HEADER, DELIMITER ',')""")


def bare_copy(csv: Path, out: Path) -> float:
    started = time.perf_counter()
    with duckdb.connect() as con:
        con.execute(f"COPY (SELECT * FROM read_csv('{csv}')) TO '{out}' (FORMAT parquet, COMPRESSION zstd)")
    return time.perf_counter() - started


async def agnes_ingest(csv_dir: Path, extracts: Path) -> tuple[float, dict[str, float]]:
    info = find_connector("csv", builtin_dir=ROOT / "connectors", custom_dir=None)
    started = time.perf_counter()
    staging = new_staging_dir(extracts, "bench_csv")
    result = await run_connector(info, staging, config={"files_dir": str(csv_dir)}, secrets={}, timeout=3600,
                                 source_name="bench_csv")
    t_run = time.perf_counter()
    assert result.status == "succeeded", result.error or result.log_tail
    report = validate_extract(staging, source_name="bench_csv")
    assert report.ok, report.to_text()
    t_valid = time.perf_counter()
    publish(extracts, "bench_csv", staging)
    done = time.perf_counter()
    return done - started, {"connector_s": t_run - started, "validate_s": t_valid - t_run, "publish_s": done - t_valid}


def build_sources(extracts: Path, sources: int, tables: int) -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    for s in range(sources):
        name = f"src{s:03d}"
        staging = new_staging_dir(extracts, name)
        (staging / "data").mkdir()
        with duckdb.connect(str(staging / "extract.duckdb")) as con:
            con.execute((ROOT / "contract_tests" / "spec" / "meta.sql").read_text())
            for t in range(tables):
                con.execute(f"CREATE TABLE t{t:04d} AS SELECT i AS id, i * 2 AS v FROM range(10) r(i)")
            con.executemany("INSERT INTO _meta VALUES (?, ?, 10, NULL, ?, 'local')",
                            [(f"t{t:04d}", f"table {t}", now) for t in range(tables)])
        publish(extracts, name, staging)


def republish(extracts: Path, source: str) -> None:
    current = published_runs(extracts)[source]
    staging = new_staging_dir(extracts, source)
    shutil.copytree(current, staging, dirs_exist_ok=True)
    publish(extracts, source, staging)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--sources", type=int, default=50)
    parser.add_argument("--tables", type=int, default=200)
    args = parser.parse_args()
    results: dict[str, object] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.platform(),
        "duckdb": duckdb.__version__, "rows": args.rows, "sources": args.sources, "tables_per_source": args.tables,
    }
    with tempfile.TemporaryDirectory(prefix="agnes-bench-") as tmp:
        root = Path(tmp)
        csv_dir = root / "csv"
        csv_dir.mkdir()
        make_csv(csv_dir / "orders.csv", args.rows)
        results["csv_bytes"] = (csv_dir / "orders.csv").stat().st_size
        bare = bare_copy(csv_dir / "orders.csv", root / "bare.parquet")
        agnes, parts = asyncio.run(agnes_ingest(csv_dir, root / "extracts"))
        results.update({"bare_copy_s": round(bare, 3), "agnes_ingest_s": round(agnes, 3),
                        "ingest_ratio": round(agnes / bare, 3), **{k: round(v, 3) for k, v in parts.items()}})

        extracts = root / "catalog"
        build_sources(extracts, args.sources, args.tables)
        catalog = ServingCatalog(extracts)
        started = time.perf_counter()
        report = catalog.sync_sources(published_runs(extracts))
        results["full_load_s"] = round(time.perf_counter() - started, 3)
        assert not report.errors, report.errors
        results["tables_served"] = len(catalog.tables())
        timings = []
        for i in range(5):
            republish(extracts, f"src{i:03d}")
            started = time.perf_counter()
            rep = catalog.sync_sources(published_runs(extracts))
            timings.append((time.perf_counter() - started) * 1000)
            assert rep.attached == [f"src{i:03d}"], rep
        results["republish_one_ms_median"] = round(sorted(timings)[len(timings) // 2], 1)
    results["aims"] = {
        "ingest <= 1.3x bare COPY": results["ingest_ratio"] <= 1.3,  # type: ignore[operator]
        "10,000 tables < 5 s": results["full_load_s"] < 5,  # type: ignore[operator]
        "one source < 200 ms": results["republish_one_ms_median"] < 200,  # type: ignore[operator]
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "sync_bench.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
