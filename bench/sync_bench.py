"""Sync and catalog benchmarks (issue: data plane). Not a gate: results go to docs/perf/.

1. Ingest: a generated N-row CSV through the CSV connector end to end (subprocess,
   contract validation, atomic publish) vs a bare DuckDB
   `COPY (SELECT * FROM read_csv(...)) TO 'x.parquet'` on the same file, same run.
   Aim: Agnes <= 1.3x the bare COPY.
2. Catalog: a full load of S sources x T tables into the serving catalog
   (`ServingCatalog.sync_sources` on a fresh catalog). Aim: 10,000 tables < 5 s.
   Layouts (--layouts):
   - `parquet` (the headline): each source written by `agnes.extract.ExtractWriter`
     exactly as the csv/sample connectors write it -- one zstd `data/<table>.parquet`
     per table plus `_meta`; each served view binds a `read_parquet`.
   - `base`: the same tables as base tables inside extract.duckdb and no parquet
     files (a layout the contract allows; cheaper to attach).
3. Re-publish: one source (T tables) gets a new run; time from the run's publish
   to the catalog serving it: `ServingCatalog.sync_sources` re-attaching that one
   source. It does NOT include the serving poll: a running server reads the
   control plane's publication counter every 0.5 s (services/serving.py), which
   adds 0-0.5 s (0.25 s on average) before this work starts.
   Aim: < 200 ms.

Usage: .venv/bin/python bench/sync_bench.py [--rows 10000000] [--sources 50] [--tables 200]
       [--layouts parquet,base] [--scale 1.0] [--out PATH]
Only a full-size run (no --scale/--rows/--sources/--tables) writes docs/perf/sync_bench.json;
other runs print their results (and write --out when given). A smoke run:
  .venv/bin/python bench/sync_bench.py --scale 0.01
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
import pyarrow as pa
from contract_tests import validate_extract

from agnes.engine.catalog import ServingCatalog
from agnes.engine.publish import new_staging_dir, publish, published_runs
from agnes.extract import ExtractWriter
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


def build_sources(extracts: Path, sources: int, tables: int, layout: str) -> None:
    """S published sources of T ten-row tables each, in `layout` (see the module docstring)."""
    now = datetime.now(UTC).replace(tzinfo=None)
    data = pa.table({"id": pa.array(range(10), pa.int64()), "v": pa.array(range(0, 20, 2), pa.int64())})
    for s in range(sources):
        name = f"src{s:03d}"
        staging = new_staging_dir(extracts, name)
        if layout == "parquet":
            with ExtractWriter(staging) as w:  # what a connector writes: data/<table>.parquet + _meta
                for t in range(tables):
                    w.add_arrow(f"t{t:04d}", data, description=f"table {t}", extracted_at=now)
        else:
            (staging / "data").mkdir()
            with duckdb.connect(str(staging / "extract.duckdb")) as con:
                con.execute((ROOT / "contract_tests" / "spec" / "meta.sql").read_text())
                for t in range(tables):
                    con.execute(f"CREATE TABLE t{t:04d} AS SELECT i AS id, i * 2 AS v FROM range(10) r(i)")
                con.executemany("INSERT INTO _meta VALUES (?, ?, 10, NULL, ?, 'local')",
                                [(f"t{t:04d}", f"table {t}", now) for t in range(tables)])
        publish(extracts, name, staging)


def catalog_bench(root: Path, sources: int, tables: int, layout: str) -> dict[str, object]:
    """Full load, then the median of 5 single-source re-publishes (serving poll excluded)."""
    extracts = root / f"catalog-{layout}"
    started = time.perf_counter()
    build_sources(extracts, sources, tables, layout)
    out: dict[str, object] = {"build_s": round(time.perf_counter() - started, 3)}
    catalog = ServingCatalog(extracts)
    try:
        started = time.perf_counter()
        report = catalog.sync_sources(published_runs(extracts))
        out["full_load_s"] = round(time.perf_counter() - started, 3)
        assert not report.errors, report.errors
        out["tables_served"] = len(catalog.tables())
        assert out["tables_served"] == sources * tables, out
        timings = []
        for i in range(5):
            source = f"src{i % sources:03d}"
            republish(extracts, source)
            started = time.perf_counter()
            rep = catalog.sync_sources(published_runs(extracts))
            timings.append((time.perf_counter() - started) * 1000)
            assert rep.attached == [source], rep
        out["republish_one_ms_median"] = round(sorted(timings)[len(timings) // 2], 1)
    finally:
        catalog.close()
    shutil.rmtree(extracts, ignore_errors=True)
    return out


def republish(extracts: Path, source: str) -> None:
    current = published_runs(extracts)[source]
    staging = new_staging_dir(extracts, source)
    shutil.copytree(current, staging, dirs_exist_ok=True)
    publish(extracts, source, staging)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, help="CSV rows for the ingest part (default 10,000,000 x scale)")
    parser.add_argument("--sources", type=int, help="sources in the catalog part (default 50 x scale)")
    parser.add_argument("--tables", type=int, help="tables per source (default 200 x scale)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply the three defaults (0.01: a seconds-long smoke run); results are then "
                             "not comparable to the aims")
    parser.add_argument("--layouts", default="parquet,base",
                        help="catalog layouts to measure, comma-separated: parquet (headline), base")
    parser.add_argument("--out", type=Path, help="write the JSON here (default: docs/perf/sync_bench.json, "
                                                 "full-size runs only)")
    args = parser.parse_args()
    if not 0 < args.scale <= 1:
        parser.error("--scale must be in (0, 1]")
    layouts = [x.strip() for x in args.layouts.split(",") if x.strip()]
    if not layouts or set(layouts) - {"parquet", "base"}:
        parser.error("--layouts takes parquet and/or base, e.g. --layouts parquet,base")
    full_size = args.scale == 1 and args.rows is None and args.sources is None and args.tables is None
    rows = args.rows or max(1000, int(10_000_000 * args.scale))
    sources = args.sources or max(2, round(50 * args.scale))
    tables = args.tables or max(2, round(200 * args.scale))
    results: dict[str, object] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.platform(),
        "duckdb": duckdb.__version__, "rows": rows, "sources": sources, "tables_per_source": tables,
        "scale": args.scale,
        "republish_measures": "ServingCatalog.sync_sources re-attaching one re-published source; excludes the "
                              "serving poll (0.5 s interval in services/serving.py: +0-0.5 s in a running server)",
    }
    with tempfile.TemporaryDirectory(prefix="agnes-bench-") as tmp:
        root = Path(tmp)
        csv_dir = root / "csv"
        csv_dir.mkdir()
        make_csv(csv_dir / "orders.csv", rows)
        results["csv_bytes"] = (csv_dir / "orders.csv").stat().st_size
        bare = bare_copy(csv_dir / "orders.csv", root / "bare.parquet")
        agnes, parts = asyncio.run(agnes_ingest(csv_dir, root / "extracts"))
        results.update({"bare_copy_s": round(bare, 3), "agnes_ingest_s": round(agnes, 3),
                        "ingest_ratio": round(agnes / bare, 3), **{k: round(v, 3) for k, v in parts.items()}})
        shutil.rmtree(csv_dir)

        for layout in layouts:
            measured = catalog_bench(root, sources, tables, layout)
            results[f"catalog_{layout}"] = measured
        headline = results[f"catalog_{layouts[0]}"]
        assert isinstance(headline, dict)
        results["catalog_layout"] = layouts[0]
        results.update({k: headline[k] for k in ("full_load_s", "tables_served", "republish_one_ms_median")})
    results["aims"] = {
        "ingest <= 1.3x bare COPY": results["ingest_ratio"] <= 1.3,  # type: ignore[operator]
        f"{sources * tables:,} tables ({layouts[0]}) < 5 s": results["full_load_s"] < 5,  # type: ignore[operator]
        "one source < 200 ms (serving poll excluded)": results["republish_one_ms_median"] < 200,  # type: ignore[operator]
    }
    out = args.out or (OUT / "sync_bench.json" if full_size else None)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    if out is None:
        print("(not written: a scaled run; pass --out PATH to keep it)")


if __name__ == "__main__":
    main()
