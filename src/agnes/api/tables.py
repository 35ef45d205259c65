"""Admin API for the table registry (`/api/admin/tables`, ids are `<source>.<table>`)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from litestar import Controller, delete, get, patch
from litestar.params import Body, QueryParameter
from msgspec import Meta

from agnes.api.deps import ClientIp, CurrentUser, InstanceDep
from agnes.api.errors import AUTH_ERRORS, documented
from agnes.api.guards import requires_admin
from agnes.api.query_params import known_query_only
from agnes.api.schemas import STRICT, ItemList, TableId
from agnes.services import registry
from agnes.services.registry import RegisteredTable


class UpdateTableRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Each field sent is marked as edited (discovery leaves it alone); null hands it back to discovery."""

    description: Annotated[str, Meta(max_length=4000)] | None | msgspec.UnsetType = msgspec.UNSET
    visibility: Literal["inherit", "all", "restricted"] | None | msgspec.UnsetType = msgspec.UNSET
    query_mode: Literal["local", "remote"] | None | msgspec.UnsetType = msgspec.UNSET


class TablesController(Controller):
    path = "/api/admin/tables"
    tags = ["tables"]
    guards = [requires_admin, known_query_only]

    @get(operation_id="listRegisteredTables", summary="Registered tables", opt={"query": ("source",)},
         responses=documented(*AUTH_ERRORS, "validation_failed", "source_not_found"))
    async def list_tables(
        self, instance: InstanceDep,
        source: Annotated[str | None, QueryParameter(description="Only this source's tables.",
                                                     max_length=200)] = None,
    ) -> ItemList[RegisteredTable]:
        found = await registry.list_tables(instance, source)
        return ItemList(items=found, count=len(found))

    @get("/{table_id:str}", operation_id="getRegisteredTable", summary="One registered table",
         responses=documented(*AUTH_ERRORS, "validation_failed", "table_not_found"))
    async def get_table(self, instance: InstanceDep, table_id: TableId) -> RegisteredTable:
        return await registry.get_table(instance, table_id)

    @patch("/{table_id:str}", operation_id="updateRegisteredTable",
           summary="Edit a table's description, visibility or query mode",
           responses=documented(*AUTH_ERRORS, "validation_failed", "table_not_found", "empty_update"))
    async def update_table(
        self, instance: InstanceDep, current_user: CurrentUser, ip: ClientIp, table_id: TableId,
        data: Annotated[UpdateTableRequest, Body(schema_extra=STRICT)],
    ) -> RegisteredTable:
        changes = {f: getattr(data, f) for f in data.__struct_fields__ if getattr(data, f) is not msgspec.UNSET}
        return await registry.update_table(instance, current_user, table_id, changes, ip=ip)

    @delete("/{table_id:str}", operation_id="deleteRegisteredTable",
            summary="Unregister a table and drop its grants",
            description="The published data is not touched. A source type that extracts every table (sample, "
                        "csv, custom) registers it again at its next sync; for csv delete or replace the file.",
            responses=documented(*AUTH_ERRORS, "validation_failed", "table_not_found"))
    async def delete_table(self, instance: InstanceDep, current_user: CurrentUser, ip: ClientIp,
                           table_id: TableId) -> None:
        await registry.delete_table(instance, current_user, table_id, ip=ip)
