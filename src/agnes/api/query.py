"""`POST /api/query`: one read-only SELECT over the tables the caller may read."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import MediaType, Request, Response, post
from litestar.params import Body
from litestar.response import Stream
from msgspec import Meta

from agnes.api.deps import CurrentUser, InstanceDep
from agnes.api.errors import documented
from agnes.api.guards import requires_viewer
from agnes.api.openapi_media import QueryOperation
from agnes.api.query_params import known_query_only
from agnes.api.schemas import STRICT
from agnes.engine.sql_guard import MAX_QUERY_CHARS
from agnes.errors import AgnesError
from agnes.services import query as query_service

QUERY_ERRORS = ("not_authenticated", "forbidden", "validation_failed", "query_syntax", "multiple_statements",
                "query_too_long", "query_too_complex", "query_not_allowed", "function_not_allowed", "table_not_found",
                "query_timeout", "query_busy", "query_failed", "query_out_of_memory", "catalog_loading",
                "not_acceptable", "format_unsupported")


class QueryRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    sql: Annotated[str, Meta(min_length=1, max_length=10 * MAX_QUERY_CHARS,
                             description=f"One SELECT statement, at most {MAX_QUERY_CHARS:,} characters (longer: "
                                         "413 query_too_long).",
                             examples=["SELECT status, count(*) FROM sample.orders GROUP BY status"])]
    limit: Annotated[int, Meta(ge=0, le=10**10, description="Return at most this many rows (the server caps "
                               "it: query.max_rows for JSON, query.stream_max_rows for Arrow/CSV).")] | None = None


class ColumnInfo(msgspec.Struct, frozen=True):
    name: str
    type: str  # DuckDB type, e.g. BIGINT, DECIMAL(12,2), TIMESTAMP


class QueryResult(msgspec.Struct, frozen=True):
    """`rows` are arrays in `columns` order. Integers (HUGEINT too, e.g. sum() of integers) and floats are
    numbers; DECIMAL (any scale) is an exact string; dates and timestamps ISO 8601 (UTC)."""

    columns: list[ColumnInfo]
    rows: list[list[Any]]
    row_count: int
    truncated: bool  # more rows existed than were returned (limit or server cap)
    elapsed_ms: float


def answer_format(request: Request[Any, Any, Any]) -> str:
    if not request.headers.get("accept"):
        return "json"
    best = request.accept.best_match(list(query_service.FORMATS))
    if best is None:
        raise AgnesError("not_acceptable", f"Cannot answer in {request.headers.get('accept')!r}.")
    return query_service.FORMATS[best]


@post(
    "/api/query",
    operation_id="runQuery",
    tags=["query"],
    summary="Run one read-only SQL query (DuckDB dialect) over the tables you may read",
    description="Tables are `source.table` (ids from GET /api/catalog/tables; a bare `table` works while only one "
                "source has it). Answers JSON by default; `Accept: application/vnd.apache.arrow.stream` streams "
                "Arrow IPC and `Accept: text/csv` streams CSV, up to a higher row cap (`X-Agnes-Max-Rows`). "
                "In JSON, DECIMAL values are exact strings; integers of every width (HUGEINT too, e.g. "
                "sum() of integers) are exact numbers. "
                "Refused: more than one statement, anything but SELECT, file/URL readers, settings and catalog "
                "functions, tables you cannot read (answered like missing tables).",
    status_code=200,
    guards=[requires_viewer, known_query_only],
    operation_class=QueryOperation,
    responses=documented(*QUERY_ERRORS),
)
async def run_query(
    request: Request[Any, Any, Any], instance: InstanceDep, current_user: CurrentUser,
    data: Annotated[QueryRequest, Body(schema_extra=STRICT)],
) -> Response[QueryResult]:
    fmt = answer_format(request)
    if fmt == "json":
        body = await query_service.run_json(instance, current_user, data.sql, data.limit)
        return Response(body, media_type=MediaType.JSON, status_code=200)
    answer = await query_service.open_stream(instance, current_user, data.sql, data.limit, fmt)
    return Stream(answer.body, media_type=answer.media_type, headers=answer.headers, status_code=200)
