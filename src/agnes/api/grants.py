"""Admin API for read grants: `GET/POST/DELETE /api/admin/grants` with `{user_id, target}`."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, delete, get, post
from litestar.params import Body, QueryParameter
from msgspec import Meta

from agnes.api.deps import ClientIp, CurrentUser, InstanceDep
from agnes.api.errors import AUTH_ERRORS, documented
from agnes.api.guards import requires_admin
from agnes.api.query_params import known_query_only
from agnes.api.schemas import STRICT, ItemList
from agnes.services import grants as grants_service
from agnes.services.grants import Grant, GrantResult

Target = Annotated[str, Meta(max_length=200, description="`<source>.<table>` (one table) or `<source>.*` "
                                                          "(every table of the source, also future ones).",
                             examples=["sample.orders", "sample.*"])]


class GrantRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    user_id: Annotated[int, Meta(ge=1, le=2**63 - 1)]
    target: Target


class GrantsController(Controller):
    path = "/api/admin/grants"
    tags = ["permissions"]
    guards = [requires_admin, known_query_only]

    @get(operation_id="listGrants", summary="Read grants, optionally of one user, source or target",
         opt={"query": ("user_id", "source", "target")},
         responses=documented(*AUTH_ERRORS, "validation_failed"))
    async def list_grants(
        self, instance: InstanceDep,
        user_id: Annotated[int | None, QueryParameter(ge=1, le=2**63 - 1, description="Only this user's.")] = None,
        source: Annotated[str | None, QueryParameter(max_length=200, description="Only grants in this source.")]
        = None,
        target: Annotated[str | None, QueryParameter(max_length=200, description="Only this exact target.")] = None,
    ) -> ItemList[Grant]:
        found = await grants_service.list_grants(instance, user_id=user_id, source=source, target=target)
        return ItemList(items=found, count=len(found))

    @post(operation_id="createGrant", summary="Let a user read a table or a whole source",
          description="Idempotent: granting again answers the existing grant with `created: false`. Audited.",
          status_code=200,
          responses=documented(*AUTH_ERRORS, "validation_failed", "invalid_grant_target", "user_not_found"))
    async def create_grant(
        self, instance: InstanceDep, current_user: CurrentUser, ip: ClientIp,
        data: Annotated[GrantRequest, Body(schema_extra=STRICT)],
    ) -> GrantResult:
        return await grants_service.grant(instance, current_user, user_id=data.user_id, target=data.target, ip=ip)

    @delete(operation_id="deleteGrant", summary="Revoke a grant (body `{user_id, target}`)",
            description="Audited. Visibility rules (`all`, a source visible to all) may still let the user read "
                        "the table: see PATCH /api/admin/tables/{id} and PATCH /api/admin/sources/{name}.",
            responses=documented(*AUTH_ERRORS, "validation_failed", "invalid_grant_target", "grant_not_found"))
    async def delete_grant(
        self, instance: InstanceDep, current_user: CurrentUser, ip: ClientIp,
        data: Annotated[GrantRequest, Body(schema_extra=STRICT)],
    ) -> None:
        await grants_service.revoke(instance, current_user, user_id=data.user_id, target=data.target, ip=ip)
