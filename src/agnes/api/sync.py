"""Sync jobs over HTTP: trigger, list, inspect, cancel (admin only)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, get, post
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.params import Body, QueryParameter
from msgspec import Meta

from agnes.api.deps import ClientIp, CurrentUser, InstanceDep
from agnes.api.errors import AUTH_ERRORS, documented
from agnes.api.guards import requires_admin
from agnes.api.schemas import STRICT, RowId
from agnes.errors import AgnesError
from agnes.extract.names import SOURCE_NAME_RE, TABLE_NAME_RE
from agnes.services import sync as sync_service
from agnes.services.sync import Job, JobPage, JobStatus, Triggered

SourceName = Annotated[str, Meta(pattern=SOURCE_NAME_RE.pattern, description="A configured source's name.")]
TableName = Annotated[str, Meta(pattern=TABLE_NAME_RE.pattern, description="A table name of that source.")]


class TriggerRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Omit `source` to sync every source; `tables` (with `source`) syncs only those tables."""

    source: SourceName | None = None
    tables: Annotated[list[TableName], Meta(min_length=1, max_length=1000)] | None = None


def only_query(*names: str) -> Any:
    """Guard: a misspelt filter (`?state=failed`) is a 400 naming the allowed ones, never silently ignored."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        unknown = sorted(set(connection.query_params) - set(names))
        if unknown:
            raise AgnesError("validation_failed", f"Unknown query parameter(s): {', '.join(map(repr, unknown))}.",
                             hint=f"Use only: {', '.join(names)} (GET /schema/openapi.json lists them).")

    return guard


class SyncController(Controller):
    path = "/api/sync"
    tags = ["sync"]
    guards = [requires_admin]

    @post(
        "/trigger",
        operation_id="triggerSync",
        summary="Start a sync job (or get the queued/running one that already covers it)",
        status_code=200,
        responses=documented(*AUTH_ERRORS, "validation_failed", "no_sources", "tables_need_source",
                             "source_not_syncable", "source_not_found", "queue_unavailable"),
    )
    async def trigger(
        self,
        instance: InstanceDep,
        current_user: CurrentUser,
        ip: ClientIp,
        data: Annotated[TriggerRequest, Body(schema_extra=STRICT, description="`{}` syncs every source.")],
    ) -> Triggered:
        return await sync_service.trigger_sync(instance, current_user, source=data.source, tables=data.tables, ip=ip)

    @get("/jobs", operation_id="listSyncJobs", summary="Sync jobs, newest first",
         guards=[only_query("status", "source", "limit", "offset")],
         responses=documented(*AUTH_ERRORS, "validation_failed"))
    async def list_jobs(
        self,
        instance: InstanceDep,
        status: Annotated[JobStatus | None, QueryParameter(description="Only jobs in this status.")] = None,
        source: Annotated[SourceName | None, QueryParameter(description="Only jobs that sync this source.")] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
        offset: Annotated[int, QueryParameter(ge=0, le=10**9)] = 0,
    ) -> JobPage:
        return await sync_service.list_jobs(instance, status=status, source=source, limit=limit, offset=offset)

    @get("/jobs/{job_id:int}", operation_id="getSyncJob", summary="One sync job with per-table outcomes and log",
         responses=documented(*AUTH_ERRORS, "job_not_found"))
    async def get_job(self, instance: InstanceDep, job_id: RowId) -> Job:
        return await sync_service.get_job(instance, job_id)

    @post(
        "/jobs/{job_id:int}/cancel",
        operation_id="cancelSyncJob",
        summary="Cancel a job: queued ends at once, running stops its connector within seconds",
        status_code=200,
        responses=documented(*AUTH_ERRORS, "job_not_found", "job_finished"),
    )
    async def cancel_job(self, instance: InstanceDep, current_user: CurrentUser, ip: ClientIp,
                         job_id: RowId) -> Job:
        return await sync_service.cancel_job(instance, current_user, job_id, ip=ip)
