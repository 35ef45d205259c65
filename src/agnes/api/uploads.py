"""CSV upload: `POST /api/admin/uploads?source=NAME`, multipart field `file`.

The size limit is AGNES_MAX_UPLOAD_MB, known only once settings are loaded,
so the handler is registered through `uploads_router(settings)`: a router
carrying the limit, which Litestar enforces while the body streams in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Controller, Request, Response, Router, post
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.exceptions import HTTPException
from litestar.params import Body, QueryParameter

from agnes.api.deps import ClientIp, CurrentUser, InstanceDep
from agnes.api.errors import ErrorBody, documented, error_response, handle_http_exception
from agnes.api.guards import requires_admin
from agnes.api.query_params import known_query_only
from agnes.errors import AgnesError
from agnes.services.uploads import StagedFile, stage_upload
from agnes.settings import Settings


@dataclass
class UploadForm:
    file: UploadFile  # the CSV file; its name (stem) becomes the table name


def _too_large(request: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorBody]:
    if exc.status_code != 413:
        return handle_http_exception(request, exc)
    limit = request.app.state.instance.settings.server.max_upload_mb
    return error_response(AgnesError(
        "payload_too_large", f"The upload is larger than the limit of {limit} MB.",
        hint=f"Split the file into parts smaller than {limit} MB (each part becomes its own table), or raise "
             "AGNES_MAX_UPLOAD_MB (server.max_upload_mb) on the server and restart it.",
    ))


class UploadsController(Controller):
    path = "/api/admin/uploads"
    tags = ["sources"]
    guards = [requires_admin, known_query_only]

    @post(
        operation_id="uploadCsv",
        opt={"query": ("source",)},
        summary="Upload a CSV file into a csv source (published by its next sync)",
        description="The file is checked in full first (UTF-8, a header row with unique names, the same number "
                    "of fields on every row, not empty, not binary); a bad file changes nothing. The table name "
                    "comes from the file name (`Orders 2024.csv` → `orders_2024`); uploading it again replaces "
                    "it atomically.",
        responses=documented("not_authenticated", "forbidden", "validation_failed", "source_not_found",
                             "wrong_source_type", "invalid_csv", "payload_too_large"),
        exception_handlers={HTTPException: _too_large},
    )
    async def upload_csv(
        self, instance: InstanceDep, current_user: CurrentUser, ip: ClientIp,
        data: Annotated[UploadForm, Body(media_type=RequestEncodingType.MULTI_PART)],
        source: Annotated[str, QueryParameter(description="Name of the csv source.", max_length=200)],
    ) -> StagedFile:
        try:
            return await stage_upload(instance, current_user, source, data.file.filename, data.file, ip=ip)
        finally:
            await data.file.close()


def uploads_router(settings: Settings) -> Router:
    return Router(path="/", route_handlers=[UploadsController],
                  request_max_body_size=settings.server.max_upload_mb * 1024 * 1024)
