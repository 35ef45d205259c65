"""One error body for every failure, framework errors included.

The body is a superset of Litestar's documented error schema
(`status_code`, `detail`, `extra`) so generated docs and fuzzers agree with
it, plus our `error: {code, message, hint}` that clients act on.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec

from agnes.errors import CATALOG, AgnesError

log = logging.getLogger("agnes.api")


class ErrorDetail(msgspec.Struct, frozen=True):
    code: str
    message: str
    hint: str


class ErrorBody(msgspec.Struct, frozen=True):
    error: ErrorDetail
    status_code: int
    detail: str
    extra: dict[str, Any] | None = None


_BY_STATUS = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_attempts",
}


def error_response(exc: AgnesError) -> Response[ErrorBody]:
    body = ErrorBody(
        error=ErrorDetail(code=exc.code, message=exc.message, hint=exc.hint),
        status_code=exc.status,
        detail=exc.message,
        extra=exc.extra or None,
    )
    return Response(body, status_code=exc.status, headers=exc.headers, media_type=MediaType.JSON)


def _validation_message(exc: ValidationException) -> str:
    problems = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if isinstance(item, dict):
            where = ".".join(str(p) for p in (item.get("source"), item.get("key")) if p)
            problems.append(f"{where}: {item.get('message')}" if where else str(item.get("message")))
    return "; ".join(problems) or str(exc.detail)


def handle_agnes_error(_: Request[Any, Any, Any], exc: AgnesError) -> Response[ErrorBody]:
    return error_response(exc)


def handle_http_exception(_: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorBody]:
    if isinstance(exc, ValidationException):
        err = AgnesError("validation_failed", _validation_message(exc), headers=exc.headers)
    elif exc.status_code >= 500:
        return handle_unexpected(_, exc)
    else:
        code = _BY_STATUS.get(exc.status_code, "request_error")
        err = AgnesError(code, str(exc.detail), status=exc.status_code, headers=exc.headers)
    return error_response(err)


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    error_id = uuid.uuid4().hex[:12]
    log.exception("unexpected error %s on %s %s", error_id, request.method, request.url.path, exc_info=exc)
    return error_response(AgnesError("internal_error", f"Unexpected server error (error id {error_id})."))


EXCEPTION_HANDLERS: dict[Any, Any] = {
    AgnesError: handle_agnes_error,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}


AUTH_ERRORS = ("not_authenticated", "forbidden")  # every guarded route may answer these


def documented(*codes: str) -> dict[int, ResponseSpec]:
    """OpenAPI responses for the error codes a handler can return (grouped by status)."""
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(CATALOG[code].status, []).append(code)
    return {
        status: ResponseSpec(
            data_container=ErrorBody,
            description="Error: " + ", ".join(f"`{c}` — {CATALOG[c].meaning}" for c in group),
            generate_examples=False,
        )
        for status, group in sorted(by_status.items())
    }
