"""Query API benchmark (issue 4). Not a gate: results go to docs/perf/.

One run measures `POST /api/query` on a real `agnes serve` (uvicorn subprocess on
127.0.0.1) against the same SQL run in-process with DuckDB on the same files:

1. `SELECT 1` latency, 1 and 16 concurrent clients; p50 with 2 sources and again
   with 50.                         Aim: p50 < 3 ms, unchanged from 2 to 50 sources.
2. GROUP BY over a 10M-row table.   Aim: API <= 1.1x bare DuckDB.
3. 100k rows x 5 columns as JSON.   Aim: <= 2x bare fetchall + msgspec.json.encode.
   ... and as Arrow.                Aim: <= 1.3x bare to_arrow_table + IPC serialization.
4. /api/health while 8 heavy queries run.  Aim: p99 < 50 ms.

Usage: .venv/bin/python bench/query_bench.py [--rows 10000000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import httpx
import msgspec
import pyarrow as pa

from agnes.control import publications
from agnes.control.db import ControlPlane
from agnes.engine.publish import new_staging_dir, publish
from agnes.extract.writer import ExtractWriter

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "perf"
PASSWORD = "correct-horse-battery-staple"  # noqa: S105 -- a throw-away bench instance
AGG = "SELECT grp, count(*) AS n, sum(val) AS s, avg(val) AS a, max(label) AS m FROM bench.events GROUP BY grp"
WIDE = "SELECT id, amount, label, day, ts FROM bench.wide"
ARROW = "application/vnd.apache.arrow.stream"


def build_bench_source(extracts: Path, rows: int) -> Path:
    staging = new_staging_dir(extracts, "bench")
    with ExtractWriter(staging) as w:
        w.add_relation("events", f"SELECT i AS id, (i % 1000)::INTEGER AS grp, (i % 100000) / 7.0 AS val, "
                                 f"'label ' || (i % 997) AS label FROM range({rows}) t(i)")
        w.add_relation("wide", "SELECT i AS id, round(i / 3.0, 2)::DOUBLE AS amount, 'row ' || i AS label, "
                               "DATE '2024-01-01' + (i % 365)::INTEGER AS day, "
                               "TIMESTAMP '2024-01-01' + to_seconds(i) AS ts FROM range(100000) t(i)")
    return publish(extracts, "bench", staging).path


def build_small_source(extracts: Path, name: str) -> Path:
    staging = new_staging_dir(extracts, name)
    with ExtractWriter(staging) as w:
        w.add_arrow("items", pa.table({"id": [1, 2, 3]}))
    return publish(extracts, name, staging).path


async def record_sources(db: Path, runs: dict[str, Path]) -> None:
    control = await ControlPlane.open(db)
    try:
        async with control.transaction() as conn:
            for source, run in runs.items():
                await conn.execute("INSERT OR IGNORE INTO sources (name, type, created_at, updated_at) "
                                   "VALUES (?, 'external', '', '')", (source,))
                await publications.record(conn, source=source, run_id=run.name, previous_run_id=None,
                                          extracted_at=None)
    finally:
        await control.close()


class Server:
    def __init__(self, data_dir: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGNES_")}
        env.update(DATA_DIR=str(data_dir), AGNES_LOG_LEVEL="warning")
        self.log = (data_dir.parent / "server.log").open("w")
        self.proc = subprocess.Popen([sys.executable, "-m", "agnes", "serve", "--host", "127.0.0.1", "--port",
                                      str(self.port)], env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/api/health", timeout=1).status_code in (200, 503):
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


def wait_served(client: httpx.Client, count: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if client.get("/api/catalog/tables").json().get("count") == count:
            return
        time.sleep(0.2)
    raise RuntimeError(f"catalog did not reach {count} tables")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def timed(fn: Callable[[], object], reps: int = 7, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def api_query(client: httpx.Client, sql: str, accept: str = "application/json") -> bytes:
    resp = client.post("/api/query", json={"sql": sql}, headers={"Accept": accept})
    assert resp.status_code == 200, resp.text[:300]
    return resp.content


def select1_latencies(url: str, headers: dict[str, str], clients: int, per_client: int) -> list[float]:
    def worker() -> list[float]:
        out = []
        with httpx.Client(base_url=url, headers=headers) as c:
            for _ in range(per_client + 5):
                started = time.perf_counter()
                api_query(c, "SELECT 1")
                out.append(time.perf_counter() - started)
        return out[5:]  # warm-up

    with ThreadPoolExecutor(clients) as pool:
        return [x for part in pool.map(lambda _: worker(), range(clients)) for x in part]


def health_under_load(url: str, headers: dict[str, str], seconds: float = 6.0) -> dict[str, float]:
    stop = threading.Event()

    def heavy() -> int:
        done = 0
        with httpx.Client(base_url=url, headers=headers, timeout=120) as c:
            while not stop.is_set():
                c.post("/api/query", json={"sql": AGG})
                done += 1
        return done

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(heavy) for _ in range(8)]
        time.sleep(1.0)  # let all 8 start
        latencies = []
        with httpx.Client(base_url=url) as c:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                started = time.perf_counter()
                assert c.get("/api/health").status_code == 200
                latencies.append(time.perf_counter() - started)
                time.sleep(0.02)
        stop.set()
        finished = sum(f.result() for f in futures)
    return {"samples": len(latencies), "p50_ms": ms(pct(latencies, 50)), "p99_ms": ms(pct(latencies, 99)),
            "max_ms": ms(max(latencies)), "heavy_queries_completed": finished}


def bare(run: Path, threads: int) -> dict[str, float]:
    con = duckdb.connect(config={"threads": str(threads), "memory_limit": "2GB"})
    con.execute("CREATE SCHEMA bench")
    for name in ("events", "wide"):
        con.execute(f"CREATE VIEW bench.{name} AS SELECT * FROM read_parquet('{run}/data/{name}.parquet')")

    def ipc() -> bytes:
        table = con.sql(WIDE).to_arrow_table()
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return sink.getvalue().to_pybytes()

    out = {"select1_s": timed(lambda: con.execute("SELECT 1").fetchall(), reps=200),
           "agg_s": timed(lambda: con.execute(AGG).fetchall()),
           "json_100k_s": timed(lambda: msgspec.json.encode(con.execute(WIDE).fetchall())),
           "arrow_100k_s": timed(ipc)}
    con.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    args = parser.parse_args()
    results: dict[str, object] = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                                  "machine": platform.platform(), "cpus": os.cpu_count(),
                                  "duckdb": duckdb.__version__, "rows": args.rows}
    with tempfile.TemporaryDirectory(prefix="agnes-qbench-") as tmp:
        data_dir = Path(tmp) / "data"
        server = Server(data_dir)
        try:
            token = (data_dir / "state" / "setup-token").read_text().strip()
            boot = httpx.post(server.url + "/auth/bootstrap",
                              json={"email": "admin@example.com", "password": PASSWORD, "setup_token": token})
            headers = {"Authorization": f"Bearer {boot.json()['access_token']}"}
            client = httpx.Client(base_url=server.url, headers=headers, timeout=300)
            extracts = data_dir / "extracts"
            run = build_bench_source(extracts, args.rows)
            runs = {"bench": run, "small00": build_small_source(extracts, "small00")}
            asyncio.run(record_sources(data_dir / "state" / "agnes.sqlite", runs))
            wait_served(client, 3)

            one = select1_latencies(server.url, headers, 1, 300)
            many = select1_latencies(server.url, headers, 16, 40)
            results["select1_2_sources"] = {"p50_ms": ms(pct(one, 50)), "p99_ms": ms(pct(one, 99)),
                                            "16_clients_p50_ms": ms(pct(many, 50)),
                                            "16_clients_p99_ms": ms(pct(many, 99))}
            results["api_agg_s"] = timed(lambda: api_query(client, AGG))
            results["api_json_100k_s"] = timed(lambda: api_query(client, WIDE))
            results["api_arrow_100k_s"] = timed(lambda: api_query(client, WIDE, ARROW))
            results["health_under_8_heavy"] = health_under_load(server.url, headers)

            more = {f"small{i:02d}": build_small_source(extracts, f"small{i:02d}") for i in range(1, 49)}
            asyncio.run(record_sources(data_dir / "state" / "agnes.sqlite", more))
            wait_served(client, 51)
            one50 = select1_latencies(server.url, headers, 1, 300)
            results["select1_50_sources"] = {"p50_ms": ms(pct(one50, 50)), "p99_ms": ms(pct(one50, 99))}
            client.close()
        finally:
            server.stop()
        results["bare"] = bare(run, threads=4)
    b = results["bare"]
    ratios = {"agg": results["api_agg_s"] / b["agg_s"], "json_100k": results["api_json_100k_s"] / b["json_100k_s"],
              "arrow_100k": results["api_arrow_100k_s"] / b["arrow_100k_s"]}
    results["ratios"] = {k: round(v, 3) for k, v in ratios.items()}
    for key in ("api_agg_s", "api_json_100k_s", "api_arrow_100k_s"):
        results[key] = round(results[key], 4)
    results["bare"] = {k: round(v, 6) for k, v in b.items()}
    s2, s50 = results["select1_2_sources"]["p50_ms"], results["select1_50_sources"]["p50_ms"]
    results["aims"] = {
        "SELECT 1 p50 < 3 ms": s2 < 3 and s50 < 3,
        "SELECT 1 unchanged 2 -> 50 sources (within 20%)": s50 <= s2 * 1.2,
        "GROUP BY 10M <= 1.1x bare": ratios["agg"] <= 1.1,
        "100k JSON <= 2x bare": ratios["json_100k"] <= 2,
        "100k Arrow <= 1.3x bare": ratios["arrow_100k"] <= 1.3,
        "health p99 < 50 ms under 8 heavy queries": results["health_under_8_heavy"]["p99_ms"] < 50,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "query_bench.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
