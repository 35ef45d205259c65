"""OpenAPI for answers that come in several formats (JSON, Arrow IPC, CSV, Parquet).

Litestar documents one media type per response; these Operation subclasses add
the others to the 200 answer, so clients and the schemathesis fuzzer know
what to expect. Used through a handler's `operation_class=`.
"""

from __future__ import annotations

from dataclasses import dataclass

from litestar.openapi.spec import OpenAPIHeader, OpenAPIMediaType, OpenAPIResponse, Operation, Schema
from litestar.openapi.spec.enums import OpenAPIType

from agnes.engine.encode import ARROW_STREAM

PARQUET = "application/vnd.apache.parquet"
_MAX_ROWS = OpenAPIHeader(schema=Schema(type=OpenAPIType.INTEGER),
                          description="Most rows this answer can hold; exactly this many means the result "
                                      "may have been cut (Arrow also ends with a batch whose metadata is "
                                      "`agnes.truncated: true`).")


def _binary(description: str) -> OpenAPIMediaType:
    return OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING, format="binary", description=description))


@dataclass
class QueryOperation(Operation):
    """200 of POST /api/query: JSON (default), Arrow IPC stream or CSV, chosen by `Accept`."""

    def __post_init__(self) -> None:
        ok = self.responses.get("200") if self.responses else None
        if isinstance(ok, OpenAPIResponse):
            ok.content = {**(ok.content or {}),
                          ARROW_STREAM: _binary("Arrow IPC stream format (schema, record batches, end marker)."),
                          "text/csv": _binary("RFC 4180 CSV, UTF-8, header row first.")}
            ok.headers = {**(ok.headers or {}), "X-Agnes-Max-Rows": _MAX_ROWS}


@dataclass
class ParquetOperation(Operation):
    """200 of GET /api/data/{id}/download: one Parquet file (not JSON)."""

    def __post_init__(self) -> None:
        ok = self.responses.get("200") if self.responses else None
        if isinstance(ok, OpenAPIResponse):
            etag = OpenAPIHeader(schema=Schema(type=OpenAPIType.STRING),
                                 description="The manifest's `hash` of this table, quoted (W/ when re-encoded).")
            ok.content = {PARQUET: _binary("One Parquet file with all of the table's rows.")}
            ok.headers = {**(ok.headers or {}), "ETag": etag}
            self.responses["304"] = OpenAPIResponse(
                description="Not modified: the `If-None-Match` hash is the current one; keep your copy.",
                headers={"ETag": etag})
