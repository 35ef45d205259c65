"""`GET /api/catalog/tables[/{id}]`: the tables the caller may read."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.params import QueryParameter

from agnes.api.deps import CurrentUser, InstanceDep
from agnes.api.errors import AUTH_ERRORS, documented
from agnes.api.guards import requires_viewer
from agnes.api.query_params import known_query_only
from agnes.api.schemas import TableId
from agnes.services import catalog as catalog_service
from agnes.services.catalog import CatalogPage, TableDetail


class CatalogController(Controller):
    path = "/api/catalog/tables"
    tags = ["catalog"]
    guards = [requires_viewer, known_query_only]

    @get(operation_id="listCatalogTables", summary="Tables you may read, with columns, size and freshness",
         opt={"query": ("source", "q")},
         responses=documented(*AUTH_ERRORS, "validation_failed", "catalog_loading"))
    async def list_tables(
        self, instance: InstanceDep, current_user: CurrentUser,
        source: Annotated[str | None, QueryParameter(max_length=200, description="Only this source's tables.")]
        = None,
        q: Annotated[str | None, QueryParameter(max_length=200, description="Case-insensitive text to find in "
                                                "the table id or description.")] = None,
    ) -> CatalogPage:
        return await catalog_service.list_tables(instance, current_user, source=source, q=q)

    @get("/{table_id:str}", operation_id="getCatalogTable",
         summary="One table with column statistics and a few sample rows",
         responses=documented(*AUTH_ERRORS, "validation_failed", "table_not_found", "catalog_loading"))
    async def get_table(self, instance: InstanceDep, current_user: CurrentUser, table_id: TableId) -> TableDetail:
        return await catalog_service.get_table(instance, current_user, table_id)
