"""Downloads for local analysis: `GET /api/data/manifest`, `GET /api/data/{id}/download`."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Response, get
from litestar.params import HeaderParameter
from litestar.response import Stream

from agnes.api.deps import ClientIp, CurrentUser, InstanceDep
from agnes.api.errors import AUTH_ERRORS, documented
from agnes.api.guards import requires_analyst
from agnes.api.openapi_media import PARQUET, ParquetOperation
from agnes.api.query_params import known_query_only
from agnes.api.schemas import TableId
from agnes.services import data as data_service
from agnes.services.data import Manifest


class DataController(Controller):
    path = "/api/data"
    tags = ["data"]
    guards = [requires_analyst, known_query_only]

    @get("/manifest", operation_id="getDataManifest", summary="Local tables you may download, with content hashes",
         description="`hash` changes only when the data does (re-syncing unchanged data keeps it): download a "
                     "table again only when its hash differs from the one you have. A table whose data cannot be "
                     "read right now is listed with `status: \"unavailable\"` and `hash: null`: keep your copy and "
                     "retry later. A table missing from the list is not yours to download any more (revoked, "
                     "deleted or remote). Remote tables are not listed (query them with POST /api/query).",
         responses=documented(*AUTH_ERRORS, "validation_failed", "catalog_loading", "data_unavailable"))
    async def get_manifest(self, instance: InstanceDep, current_user: CurrentUser) -> Manifest:
        return await data_service.manifest(instance, current_user)

    @get("/{table_id:str}/download", operation_id="downloadTable", summary="One table as a single Parquet file",
         description="Partitioned tables are combined into one file. Send `If-None-Match: \"<hash>\"` to get 304 "
                     "when your copy is current.",
         operation_class=ParquetOperation,
         responses={**documented(*AUTH_ERRORS, "validation_failed", "table_not_found", "table_is_remote",
                                 "catalog_loading", "data_unavailable")},
         status_code=200)
    async def download(
        self, instance: InstanceDep, current_user: CurrentUser, ip: ClientIp, table_id: TableId,
        if_none_match: Annotated[str | None, HeaderParameter(name="If-None-Match", required=False, max_length=2000,
                                                             description="The hash (ETag) of your copy.")] = None,
    ) -> Response[Any]:
        found = await data_service.open_download(instance, current_user, table_id, if_none_match=if_none_match,
                                                 ip=ip)
        tag = f'"{found.etag}"' if found.exact else f'W/"{found.etag}"'
        headers = {"ETag": tag, "Cache-Control": "private, no-cache"}
        if found.body is None:
            return Response(b"", status_code=304, headers=headers, media_type=PARQUET)
        headers["Content-Disposition"] = f'attachment; filename="{found.table_id}.parquet"'
        if found.size is not None:
            headers["Content-Length"] = str(found.size)
        return Stream(found.body, media_type=PARQUET, headers=headers, status_code=200)
