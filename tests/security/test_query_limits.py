"""The executor's caps against a real catalog: legitimate queries work; time, rows,
memory and concurrency are bounded; the event loop stays free; the catalog survives."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from agnes.engine.catalog import ServingCatalog
from agnes.engine.limits import parse_size, recommended_cap
from agnes.engine.query import HTTP_STATUS, QueryBusy, QueryExecutor, QueryFailed, QueryTimeout
from tests.security.conftest import alpha_only

SLOW = "SELECT sum(a.range * b.range) FROM range(100000000) a, range(100000000) b"
ROOT = Path(__file__).resolve().parents[2]


async def run(executor: QueryExecutor, sql: str, limit: int | None = None):  # noqa: ANN201
    return await executor.run(await executor.guard(sql, readable=alpha_only), limit=limit)


@pytest.mark.parametrize(
    ("sql", "rows"),
    [
        ("SELECT o.id, c.name FROM orders o JOIN customers c ON o.customer_id = c.id ORDER BY o.id",
         [(1, "Ann"), (2, "Bob"), (3, "Ann"), (4, "Cid")]),
        ("WITH big AS (SELECT * FROM alpha.orders WHERE amount > 5) SELECT count(*) FROM big", [(3,)]),
        ("SELECT id, rank() OVER (PARTITION BY customer_id ORDER BY amount DESC) FROM orders ORDER BY id",
         [(1, 1), (2, 1), (3, 2), (4, 1)]),
        ("SELECT name FROM customers WHERE id IN (SELECT customer_id FROM orders WHERE amount > 9) ORDER BY 1",
         [("Ann",), ("Bob",)]),
        ("SELECT origin FROM alpha.shared", [("alpha",)]),
        ("SELECT sum(range) FROM range(5)", [(10,)]),
        ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 4) SELECT sum(n) FROM r", [(10,)]),
        ("SELECT * FROM customers PIVOT (count(*) FOR name IN ('Ann', 'Bob'))", [(10, 1, 0), (11, 0, 1), (12, 0, 0)]),
        ("VALUES (1, 'x')", [(1, "x")]),
        ("WITH salaries AS (SELECT 42 AS s) SELECT s FROM salaries", [(42,)]),  # a CTE, not beta's table
        ("SELECT column_name FROM (DESCRIBE alpha.customers)", [("id",), ("name",)]),
    ],
)
async def test_legitimate_queries(executor: QueryExecutor, sql: str, rows: list[tuple]) -> None:
    result = await run(executor, sql)
    got = [tuple(r.values()) for r in result.table.to_pylist()]
    assert sorted(got, key=repr) == sorted(rows, key=repr) and not result.truncated


async def test_result_shape_and_audit_ids(executor: QueryExecutor) -> None:
    guarded = await executor.guard("SELECT o.*, c.name FROM orders o JOIN customers c ON c.id = o.customer_id",
                                   readable=alpha_only)
    assert guarded.tables == ("alpha.customers", "alpha.orders")
    result = await executor.run(guarded)
    assert result.columns == [("id", "BIGINT"), ("customer_id", "BIGINT"), ("amount", "DOUBLE"), ("name", "VARCHAR")]
    assert result.elapsed_ms > 0


async def test_row_cap_sets_truncated(executor: QueryExecutor) -> None:
    capped = await run(executor, "SELECT * FROM alpha.orders ORDER BY id DESC", limit=2)
    assert capped.truncated and capped.table.column("id").to_pylist() == [4, 3]
    exact = await run(executor, "SELECT * FROM alpha.orders", limit=4)
    assert not exact.truncated and exact.table.num_rows == 4
    default = await run(executor, "SELECT * FROM range(1000)")  # executor max_rows is 100
    assert default.truncated and default.table.num_rows == 100
    clamped = await run(executor, "SELECT * FROM range(1000)", limit=10_000)
    assert clamped.table.num_rows == 100
    empty = await run(executor, "SELECT * FROM alpha.orders", limit=0)
    assert empty.table.num_rows == 0 and empty.truncated and empty.table.column_names == ["id", "customer_id", "amount"]


async def test_byte_cap_truncates_wide_results(catalog: ServingCatalog) -> None:
    executor = QueryExecutor(catalog, max_result_bytes=200_000)
    try:
        result = await run(executor, "SELECT repeat('x', 10000) AS wide FROM range(5000)")
        assert result.truncated and 0 < result.table.num_rows < 5000 and result.table.nbytes < 20_000_000
    finally:
        executor.close()


async def test_timeout_interrupts_and_catalog_answers_afterwards(catalog: ServingCatalog) -> None:
    executor = QueryExecutor(catalog, timeout_s=0.5)
    try:
        started = time.perf_counter()
        with pytest.raises(QueryTimeout) as info:
            await run(executor, SLOW)
        assert time.perf_counter() - started < 5
        assert HTTP_STATUS[info.value.code] == 408 and "0.5 s" in info.value.message and info.value.hint
        assert (await run(executor, "SELECT 1 AS one")).table.to_pylist() == [{"one": 1}]
    finally:
        executor.close()
    assert catalog.execute_readonly("SELECT 1").num_rows == 1


async def test_memory_explosions_stop_cleanly(catalog: ServingCatalog) -> None:
    executor = QueryExecutor(catalog, timeout_s=3)
    try:
        for sql in ("SELECT length(string_agg(repeat('x', 1000), ',')) FROM range(10000000)",
                    "SELECT list(range) FROM range(200000000)",
                    "SELECT count(*) FROM (SELECT * FROM range(3000000) a, range(3000) b ORDER BY a.range + b.range)"):
            with pytest.raises((QueryFailed, QueryTimeout)) as info:
                await run(executor, sql)
            assert info.value.code in ("query_out_of_memory", "query_timeout"), info.value.message
        assert (await run(executor, "SELECT count(*) AS n FROM orders")).table.to_pylist() == [{"n": 4}]
    finally:
        executor.close()


async def test_concurrency_limit_and_bounded_queue(catalog: ServingCatalog) -> None:
    executor = QueryExecutor(catalog, max_concurrency=2, timeout_s=2.0, queue_size=2, queue_timeout_s=0.5)
    try:
        guarded = await executor.guard(SLOW, readable=alpha_only)
        running = [asyncio.create_task(executor.run(guarded)) for _ in range(2)]
        await asyncio.sleep(0.2)
        queued = [asyncio.create_task(executor.run(guarded)) for _ in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(QueryBusy) as busy:  # slots and queue full: refused at once
            await executor.run(guarded)
        assert busy.value.retry_after >= 1 and HTTP_STATUS[busy.value.code] == 503
        for task in queued:  # waited longer than queue_timeout_s
            with pytest.raises(QueryBusy):
                await task
        for task in running:
            with pytest.raises(QueryTimeout):
                await task
        assert (await run(executor, "SELECT 7 AS x")).table.to_pylist() == [{"x": 7}]
    finally:
        executor.close()


async def test_event_loop_stays_responsive(catalog: ServingCatalog) -> None:
    executor = QueryExecutor(catalog, timeout_s=1.0)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        with pytest.raises(QueryTimeout):
            await run(executor, SLOW)
    finally:
        task.cancel()
        executor.close()
    assert ticks > 30  # ~100 possible in 1 s; a blocked loop would give ~0


async def test_cancelled_request_interrupts_its_query(catalog: ServingCatalog) -> None:
    executor = QueryExecutor(catalog, max_concurrency=1, timeout_s=30.0, queue_timeout_s=5.0)
    try:
        task = asyncio.create_task(run(executor, SLOW))
        await asyncio.sleep(0.3)
        task.cancel()
        started = time.perf_counter()
        result = await run(executor, "SELECT 1 AS one")  # needs the only slot: freed by the interrupt
        assert result.table.num_rows == 1 and time.perf_counter() - started < 3
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        executor.close()


async def test_stream_arrow(executor: QueryExecutor) -> None:
    guarded = await executor.guard("SELECT range AS i FROM range(25)", readable=alpha_only)
    stream = await executor.stream_arrow(guarded, batch_rows=10, max_rows=22)
    assert stream.columns == [("i", "BIGINT")] and stream.schema.names == ["i"]
    sizes = [batch.num_rows async for batch in stream]
    assert sum(sizes) == 22 and stream.truncated
    with pytest.raises(QueryFailed) as info:  # run-time failure surfaces before any byte is sent
        await executor.stream_arrow(await executor.guard("SELECT CAST(name AS INT) FROM customers",
                                                         readable=alpha_only))
    assert info.value.code == "query_failed"
    async with await executor.stream_arrow(guarded) as unread:  # closed without reading: slot returned
        assert unread.columns
    for _ in range(3):  # max_concurrency=2: would hang/raise QueryBusy if slots leaked
        assert (await run(executor, "SELECT 1 AS one")).table.num_rows == 1


def test_size_helpers() -> None:
    assert parse_size("2GB") == 2 * 1000**3 and parse_size("512 MiB") == 512 * 1024**2
    assert recommended_cap("1GB", "1GB") == 2 * 1000**3
    with pytest.raises(ValueError, match="not a size"):
        parse_size("lots")


@pytest.mark.slow
def test_process_memory_cap_turns_untracked_allocations_into_clean_errors(tmp_path: Path) -> None:
    """A 3 GB string is built outside DuckDB's memory_limit; under the cap it fails cleanly."""
    script = textwrap.dedent(f"""
        import asyncio, sys
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from agnes.engine import publish as pub
        from agnes.engine.catalog import ServingCatalog
        from agnes.engine.connection import ConnectionPolicy
        from agnes.engine.limits import apply_memory_cap, parse_size
        from agnes.engine.query import QueryExecutor, QueryFailed
        from tests.security.conftest import alpha_tables, publish_source, alpha_only
        extracts = Path({str(tmp_path)!r}) / "extracts"
        extracts.mkdir()
        publish_source(extracts, "alpha", alpha_tables())
        catalog = ServingCatalog(extracts, ConnectionPolicy(threads=2, memory_limit="256MB"))
        catalog.sync_sources(pub.published_runs(extracts))
        apply_memory_cap(parse_size("1500MiB"))
        executor = QueryExecutor(catalog, timeout_s=60)
        async def main():
            sql = "WITH n AS (SELECT 3000000000 AS k) SELECT length(repeat('x', k)) FROM n"
            try:
                await executor.run(executor.check(sql, readable=alpha_only))
            except QueryFailed as exc:
                print("CODE", exc.code)
            result = await executor.run(executor.check("SELECT count(*) AS n FROM orders", readable=alpha_only))
            print("AFTER", result.table.to_pylist())
        asyncio.run(main())
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "CODE query_out_of_memory" in done.stdout and "AFTER [{'n': 4}]" in done.stdout, done.stdout


async def test_abandoned_and_cancelled_streams_free_their_slot(catalog: ServingCatalog) -> None:
    executor = QueryExecutor(catalog, max_concurrency=1, timeout_s=30.0, queue_timeout_s=5.0)
    try:
        endless = await executor.guard("SELECT * FROM range(1000000000)", readable=alpha_only)
        async with await executor.stream_arrow(endless, batch_rows=10) as stream:
            async for _batch in stream:
                break  # the client went away after one batch
        starting = asyncio.create_task(executor.stream_arrow(await executor.guard(SLOW, readable=alpha_only)))
        await asyncio.sleep(0.3)
        starting.cancel()  # cancelled while DuckDB computes the first batch
        started = time.perf_counter()
        assert (await run(executor, "SELECT 1 AS one")).table.num_rows == 1
        assert time.perf_counter() - started < 3
        with pytest.raises(asyncio.CancelledError):
            await starting
    finally:
        executor.close()


async def test_cancellation_at_any_moment_frees_the_slot(catalog: ServingCatalog) -> None:
    """Cancel at many different moments (before, while and after DuckDB starts): an interrupt that
    lands before execution begins must not leave the query holding its only slot until the timeout."""
    executor = QueryExecutor(catalog, max_concurrency=1, timeout_s=120.0, stream_timeout_s=120.0,
                             queue_timeout_s=10.0)
    slow = await executor.guard(SLOW, readable=alpha_only)
    try:
        for i in range(12):
            if i % 2:
                task = asyncio.create_task(executor.run(slow))
            else:
                task = asyncio.create_task(executor.stream_arrow(slow))
            await asyncio.sleep(0.002 * i)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            one = await run(executor, "SELECT 1 AS one")  # QueryBusy after 10 s if the slot leaked
            assert one.table.num_rows == 1
    finally:
        executor.close()


async def test_stream_that_outlives_its_time_limit_between_reads_stops(catalog: ServingCatalog) -> None:
    executor = QueryExecutor(catalog, max_concurrency=1, stream_timeout_s=1.0, queue_timeout_s=10.0)
    try:
        endless = await executor.guard("SELECT * FROM range(1000000000)", readable=alpha_only)
        stream = await executor.stream_arrow(endless, batch_rows=10)
        batches = aiter(stream)
        assert (await anext(batches)).num_rows == 10
        await asyncio.sleep(1.5)  # a slow client: the limit passes while no read is running
        with pytest.raises(QueryTimeout):
            async for _ in batches:
                pass
        assert (await run(executor, "SELECT 1 AS one")).table.num_rows == 1
    finally:
        executor.close()


async def test_long_sql_checks_are_bounded_and_short_ones_do_not_wait(catalog: ServingCatalog,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Checks run before a query slot is taken: at most LONG_CHECKS long ones at once, each on
    its own thread's parser, while a short check goes straight through."""
    import threading

    from agnes.engine import query as engine_query

    executor = QueryExecutor(catalog)
    release, lock = threading.Event(), threading.Lock()
    running, most = 0, 0
    real_check = QueryExecutor.check

    def check(self, sql, *, readable):  # noqa: ANN001, ANN202
        nonlocal running, most
        if len(sql) > engine_query.SHORT_SQL_CHARS:
            with lock:
                running += 1
                most = max(most, running)
            release.wait(30)
            with lock:
                running -= 1
        return real_check(self, sql, readable=readable)

    monkeypatch.setattr(QueryExecutor, "check", check)
    long_sql = "SELECT 1 WHERE 1 IN (" + ",".join(map(str, range(2_000))) + ")"
    try:
        waiting = [asyncio.create_task(executor.guard(long_sql, readable=alpha_only)) for _ in range(6)]
        await asyncio.sleep(0.2)
        short = await executor.guard("SELECT 1", readable=alpha_only)  # answers while long ones block
        assert short.sql and not any(t.done() for t in waiting)
        assert most == engine_query.LONG_CHECKS
        waiting[0].cancel()  # a request that goes away keeps its turn until its thread ends
        release.set()
        done = await asyncio.gather(*waiting[1:])
        assert all(g.sql == done[0].sql for g in done) and most == engine_query.LONG_CHECKS
    finally:
        release.set()
        executor.close()
