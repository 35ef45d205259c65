"""The event loop stays responsive while heavy queries run (they run on worker threads).

Latency figures belong to bench/query_bench.py (a real uvicorn); this test only
checks that health keeps answering quickly, in-process, while 8 heavy queries
hold every query slot and fill the queue.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from litestar import Litestar

from agnes.app import create_app
from tests.serving_helpers import threaded_client

HEAVY = "SELECT count(*) FROM range(3000000) a, range(3000000) b WHERE a.range * b.range = 7"


@pytest.fixture
def app(make_settings) -> Litestar:
    return create_app(make_settings(AGNES_QUERY_TIMEOUT="3", AGNES_QUERY_CONCURRENCY="4"))


async def test_health_answers_while_heavy_queries_run(client, admin_token, auth):
    sync = threaded_client(client)
    h = auth(admin_token)
    executor = client.app.state.instance.query
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(8)  # the heavy callers' own threads: the default pool has only cores + 4
    heavy = [loop.run_in_executor(pool, lambda: sync.post("/api/query", json={"sql": HEAVY}, headers=h))
             for _ in range(8)]
    for _ in range(200):  # wait until the slots are really taken
        if executor._slots is not None and executor._slots.locked():
            break
        await asyncio.sleep(0.01)
    assert executor._slots is not None and executor._slots.locked()
    latencies = []
    while not all(t.done() for t in heavy) and len(latencies) < 40:
        started = time.perf_counter()
        resp = await asyncio.to_thread(sync.get, "/api/health")
        latencies.append(time.perf_counter() - started)
        assert resp.status_code == 200 and resp.json()["checks"]["control_plane"]["status"] == "ok"
        await asyncio.sleep(0.05)
    results = await asyncio.gather(*heavy)
    pool.shutdown()
    assert {r.status_code for r in results} == {408}  # all ran (and hit the time limit), none refused
    assert len(latencies) >= 10
    assert statistics.median(latencies) < 0.2 and max(latencies) < 1.0, latencies
