"""The SQL query use case: permissions -> guard -> sandboxed run -> JSON, Arrow or CSV.

Every step that can fail (catalog loading, the read rule, the guard, binding,
the first batch) happens before an answer starts, so errors are clean JSON
with a status and a hint. Streams can still end early after that: a timeout
breaks the download (the client sees an incomplete body, never a short
"valid" file); the row cap is announced up front in `X-Agnes-Max-Rows`, and an
Arrow stream the cap cut ends with an empty batch whose custom metadata is
`agnes.truncated: true`.
Each query is logged (user, tables read, rows, time) on the `agnes.query`
logger for audit: writing a control-plane row per `SELECT 1` would serialize
queries on SQLite's single writer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from agnes.engine import query as engine
from agnes.engine.encode import ARROW_STREAM, ArrowIpcEncoder, CsvEncoder, csv_problem, encode_json, rows_of
from agnes.engine.limits import apply_memory_cap, parse_size, recommended_cap
from agnes.engine.query import GuardedQuery, QueryExecutor
from agnes.errors import CATALOG, AgnesError
from agnes.models import User
from agnes.services.instance import Instance
from agnes.services.permissions import access_for
from agnes.settings import Settings

log = logging.getLogger("agnes.query")
ENGINE_ERRORS = (engine.QueryRefused, engine.QueryFailed, engine.QueryTimeout, engine.QueryBusy)
FORMATS = {"application/json": "json", ARROW_STREAM: "arrow", "text/csv": "csv"}
_ACCEPTED: OrderedDict[str, tuple[object, GuardedQuery]] = OrderedDict()  # sql -> (resolver, checked query)


def create_executor(instance: Instance) -> QueryExecutor:
    """The ONE executor of a serving process (the app lifespan creates and closes it)."""
    assert instance.serving is not None
    q = instance.settings.query
    return QueryExecutor(instance.serving.catalog, max_concurrency=q.concurrency, timeout_s=q.timeout_seconds,
                         max_rows=q.max_rows, stream_max_rows=q.stream_max_rows,
                         stream_timeout_s=q.stream_timeout_seconds, queue_size=4 * q.concurrency)


def apply_serve_memory_cap(settings: Settings) -> int | None:
    """Cap the server process's memory (RLIMIT_DATA) as configured; None when `off`."""
    cap = settings.query.memory_cap
    if cap == "off":
        return None
    wanted = recommended_cap(settings.query.memory_limit) if cap == "auto" else parse_size(cap)
    applied = apply_memory_cap(wanted)
    log.info("memory cap (RLIMIT_DATA) %.1f GiB", applied / 1024**3)
    return applied


def to_agnes_error(exc: Exception) -> AgnesError:
    """An engine refusal/failure as the API's error (status from engine.HTTP_STATUS)."""
    code = getattr(exc, "code", "query_failed")
    code = code if code in CATALOG else "query_failed"
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, engine.QueryBusy) else None
    return AgnesError(code, getattr(exc, "message", str(exc)), hint=getattr(exc, "hint", None),
                      status=engine.HTTP_STATUS.get(code), headers=headers)


def executor_of(instance: Instance) -> QueryExecutor:
    if instance.query is None or instance.serving is None or not instance.serving.state.loaded:
        raise AgnesError("catalog_loading")
    return instance.query


async def guard(instance: Instance, user: User, sql: str) -> GuardedQuery:
    """Check `sql` against what `user` may read (the one read rule); refusals become AgnesErrors.

    An accepted query is remembered per (catalog names, SQL text): its checked form does not depend
    on who asks, only on which tables it reads, so a repeat needs just the read rule on those
    tables. Anything else (a table this user may not read, a new publication) runs the full guard.
    """
    executor = executor_of(instance)
    access = await access_for(instance, user)
    resolver = executor.resolver()
    hit = _ACCEPTED.get(sql)
    if hit is not None and hit[0] is resolver and all(access.can_read(t) for t in hit[1].tables):
        return hit[1]
    try:
        guarded = await executor.guard(sql, readable=access.can_read)
    except ENGINE_ERRORS as exc:
        log.info("query refused user=%s code=%s", user.id, getattr(exc, "code", "?"))
        raise to_agnes_error(exc) from None
    if len(sql) <= 20_000 and not guarded.per_user:  # per_user: it lists what this caller may read
        _ACCEPTED[sql] = (resolver, guarded)
        while len(_ACCEPTED) > 1024:
            _ACCEPTED.popitem(last=False)
    return guarded


def _audit(user: User, guarded: GuardedQuery, rows: int, elapsed_ms: float, fmt: str, outcome: str) -> None:
    log.info("query user=%s tables=%s format=%s rows=%d elapsed_ms=%.1f outcome=%s", user.id,
             ",".join(guarded.tables) or "-", fmt, rows, elapsed_ms, outcome)


async def run_json(instance: Instance, user: User, sql: str, limit: int | None) -> bytes:
    """The whole answer as JSON bytes, encoded off the event loop."""
    guarded = await guard(instance, user, sql)
    try:
        result = await executor_of(instance).run(guarded, limit=limit)
    except ENGINE_ERRORS as exc:
        _audit(user, guarded, 0, 0, "json", getattr(exc, "code", "error"))
        raise to_agnes_error(exc) from None
    _audit(user, guarded, result.table.num_rows, result.elapsed_ms, "json", "ok")

    def encode() -> bytes:
        return encode_json({
            "columns": [{"name": n, "type": t} for n, t in result.columns],
            "rows": rows_of(result.table, [t for _, t in result.columns]),
            "row_count": result.table.num_rows,
            "truncated": result.truncated,
            "elapsed_ms": round(result.elapsed_ms, 3),
        })

    if result.table.num_rows * max(1, result.table.num_columns) <= 2_000:
        return encode()  # microseconds: a thread hop would cost more than the work
    return await asyncio.to_thread(encode)


@dataclass
class StreamAnswer:
    """An Arrow or CSV answer that has started: iterate `body` (it closes the query at the end)."""

    media_type: str
    body: AsyncIterator[bytes]
    headers: dict[str, str] = field(default_factory=dict)


async def open_stream(instance: Instance, user: User, sql: str, limit: int | None, fmt: str) -> StreamAnswer:
    guarded = await guard(instance, user, sql)
    executor = executor_of(instance)
    started = time.perf_counter()
    try:
        stream = await executor.stream_arrow(guarded, max_rows=limit)
    except ENGINE_ERRORS as exc:
        _audit(user, guarded, 0, 0, fmt, getattr(exc, "code", "error"))
        raise to_agnes_error(exc) from None
    assert stream.schema is not None
    if fmt == "csv" and (bad := csv_problem(stream.schema)):
        await stream.aclose()
        raise AgnesError("format_unsupported", f"CSV cannot hold these columns: {bad}.")
    cap = executor.stream_max_rows if limit is None else max(0, min(limit, executor.stream_max_rows))
    headers = {"X-Agnes-Max-Rows": str(cap), "Cache-Control": "no-store"}
    return StreamAnswer(ARROW_STREAM if fmt == "arrow" else "text/csv",
                        _body(stream, fmt, user, guarded, started), headers)


async def _body(stream: engine.ArrowStream, fmt: str, user: User, guarded: GuardedQuery,
                started: float) -> AsyncIterator[bytes]:
    rows, outcome = 0, "broken"
    assert stream.schema is not None
    try:
        async with stream:
            if fmt == "arrow":
                arrow = ArrowIpcEncoder(stream.schema)
                yield arrow.start()
                async for batch in stream:
                    rows += batch.num_rows
                    yield arrow.encode(batch)
                if stream.truncated:
                    yield arrow.mark_truncated(stream.schema)
                yield arrow.finish()
            else:
                csv = CsvEncoder()
                yield csv.header(stream.schema)
                async for batch in stream:
                    rows += batch.num_rows
                    yield await asyncio.to_thread(csv.encode, batch)
        outcome = "truncated" if stream.truncated else "ok"
    except ENGINE_ERRORS as exc:
        outcome = getattr(exc, "code", "error")
        raise
    finally:
        _audit(user, guarded, rows, (time.perf_counter() - started) * 1000, fmt, outcome)
