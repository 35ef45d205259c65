"""Keboola extraction benchmark (issue 5). Not a gate: results go to docs/perf/keboola_bench.json.

A 2M-row sliced table (8 typed columns) on the local Keboola Storage API
server, with exports in S3 (moto server mode on 127.0.0.1):

1. The keboola connector, as the sync runs it (subprocess): export job,
   parallel slice download with the federation credentials, typing, parquet.
2. Plain httpx: the same slice files downloaded one after another from S3 via
   presigned URLs - bytes only, no parsing - the floor for moving the data.

Reported: wall time, rows/s and MB/s (compressed slices) for both, the
connector's overhead over the plain download, and the export time on the
server side (which the plain download does not pay).

Usage: .venv/bin/python bench/keboola_bench.py [--rows 2000000] [--slice-rows 250000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import httpx

from agnes.devtools.keboola_server import TS, KeboolaData, KeboolaServer
from agnes.devtools.keboola_storage import S3Backend, utc_iso
from agnes.extract.keboola.api import StorageApi
from agnes.extract.runner import find_connector, run_connector

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token-0123456789"  # noqa: S105 - the local test server's token
TABLE = "in.c-bench.events"
COLUMNS = {"id": "INTEGER", "user_id": "INTEGER", "amount": ("NUMERIC", "12,2"), "ratio": "FLOAT",
           "ok": "BOOLEAN", "day": "DATE", "at": "TIMESTAMP", "label": "STRING"}


def make_table(data: KeboolaData, rows: int, tmp: Path) -> float:
    started = time.perf_counter()
    csv = tmp / "events.csv"
    duckdb.sql(f"""COPY (SELECT i AS id, i % 50000 AS user_id, round((i % 100000) / 7.0, 2)::VARCHAR AS amount,
        (i % 997) / 13.0 AS ratio, CASE WHEN i % 3 = 0 THEN 'true' ELSE 'false' END AS ok,
        (DATE '2020-01-01' + (i % 1500)::INTEGER)::VARCHAR AS day,
        (TIMESTAMP '2020-01-01' + to_seconds(i))::VARCHAR AS at, 'label-' || (i % 1000) AS label,
        '{utc_iso()}' AS {TS} FROM range({rows}) t(i)) TO '{csv}' (HEADER true, FORCE_QUOTE *)""")
    data.put_csv(TABLE, list(COLUMNS), csv, types=COLUMNS, primary_key=["id"])
    return time.perf_counter() - started


def plain_download(server: KeboolaServer, backend: S3Backend) -> tuple[float, int, int, dict]:
    """Export once (not timed), then time downloading every slice with plain httpx via presigned URLs."""
    with StorageApi(server.url, TOKEN) as api:
        info = api.export(TABLE)
    manifest = httpx.get(info["url"], timeout=60).json()
    keys = [e["url"].removeprefix(f"s3://{backend.bucket}/") for e in manifest["entries"]]
    urls = [backend.s3.generate_presigned_url("get_object", Params={"Bucket": backend.bucket, "Key": k})
            for k in keys]
    total = 0
    started = time.perf_counter()
    with httpx.Client(timeout=300) as http:
        for url in urls:
            with http.stream("GET", url) as resp:
                resp.raise_for_status()
                for chunk in resp.iter_bytes(1 << 20):
                    total += len(chunk)
    return time.perf_counter() - started, total, len(urls), info


def sdk_download(info: dict, endpoint: str, dest: Path) -> float:
    """The connector's own download() in this process (imports warm): its cost without process start-up."""
    from agnes.extract.keboola.storage import download

    started = time.perf_counter()
    download(info, dest, endpoints={"s3": endpoint})
    return time.perf_counter() - started


async def connector_run(server: KeboolaServer, endpoint: str, out: Path) -> tuple[float, dict]:
    info = find_connector("keboola", builtin_dir=ROOT / "connectors", custom_dir=None)
    started = time.perf_counter()
    result = await run_connector(info, out, config={"keboola_url": server.url,
                                                    "storage_endpoints": {"s3": endpoint}},
                                 secrets={"KEBOOLA_STORAGE_TOKEN": TOKEN}, timeout=1800, tables=[TABLE])
    elapsed = time.perf_counter() - started
    if not result.ok or not result.tables_done:
        raise SystemExit(f"connector failed: {result.error} {result.tables_failed}\n" + "\n".join(result.stderr_tail))
    done = next(iter(result.tables_done.values()))
    return elapsed, done


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--slice-rows", type=int, default=250_000)
    args = parser.parse_args()
    from moto.server import ThreadedMotoServer

    with tempfile.TemporaryDirectory(prefix="agnes-kbc-bench-") as tmp_name:
        tmp = Path(tmp_name)
        data = KeboolaData(tmp / "kbc")
        gen_s = make_table(data, args.rows, tmp)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        moto.start()
        try:
            endpoint = f"http://127.0.0.1:{port}"
            backend = S3Backend(endpoint, "kbc-bench")
            server = KeboolaServer(data.root, tokens=[TOKEN], slice_rows=args.slice_rows, backend=backend).start()
            try:
                t0 = time.perf_counter()
                plain_s, plain_bytes, slices, info = plain_download(server, backend)
                export_and_plain_s = time.perf_counter() - t0
                sdk_s = sdk_download(info, endpoint, tmp / "sdk-download")
                conn_s, conn = asyncio.run(connector_run(server, endpoint, tmp / "out"))
            finally:
                server.stop()
        finally:
            moto.stop()
    export_s = export_and_plain_s - plain_s  # the server's export when the plain loop asked for it
    rows = args.rows
    result = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "duckdb": duckdb.__version__},
        "rows": rows, "slices": slices, "slice_rows": args.slice_rows, "compressed_bytes": plain_bytes,
        "table_generation_s": round(gen_s, 2),
        "server_export_s": round(export_s, 2),
        "plain_httpx_download": {"seconds": round(plain_s, 2), "rows_per_s": round(rows / plain_s),
                                 "mb_per_s": round(plain_bytes / plain_s / 1e6, 1)},
        "connector": {"seconds": round(conn_s, 2), "rows_written": conn["rows"], "parquet_bytes": conn["bytes"],
                      "export_job_s": conn["export_s"], "download_s": conn["download_s"],
                      "download_mb_per_s": round(conn["downloaded_bytes"] / conn["download_s"] / 1e6, 1),
                      "typing_and_parquet_s": conn["load_s"],
                      "typing_rows_per_s": round(rows / conn["load_s"]),
                      "extract_rows_per_s": round(rows / (conn["download_s"] + conn["load_s"])),
                      "process_overhead_s": round(conn_s - conn["export_s"] - conn["download_s"] - conn["load_s"], 2)},
        "download_in_process": {"seconds": round(sdk_s, 2), "mb_per_s": round(plain_bytes / sdk_s / 1e6, 1),
                                "vs_plain": round(sdk_s / plain_s, 2)},
        "download_vs_plain": round(conn["download_s"] / plain_s, 2),
        "notes": "export_job_s is the test server's own export (DuckDB gzip + moto upload), which the plain "
                 "download does not pay; download_s moves the same compressed slices as the plain httpx loop "
                 "(boto3, 8 in parallel) and, in the subprocess, includes the cold import of boto3/botocore and the "
                 "client set-up; download_in_process is the same download() with warm imports; "
                 "typing_and_parquet_s parses, types and writes zstd parquet.",
    }
    out = ROOT / "docs" / "perf" / "keboola_bench.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
