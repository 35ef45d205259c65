"""Admin API for sources: configure, list, change, delete, discover-and-register."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, delete, get, patch, post
from litestar.params import Body, PathParameter, QueryParameter
from msgspec import Meta

from agnes.api.deps import ClientIp, CurrentUser, InstanceDep
from agnes.api.errors import AUTH_ERRORS, documented
from agnes.api.guards import requires_admin
from agnes.api.query_params import known_query_only
from agnes.api.schemas import STRICT, ItemList
from agnes.services import registry
from agnes.services import sources as sources_service
from agnes.services.registry import DiscoveryResult
from agnes.services.source_options import SCHEDULE_HINT
from agnes.services.source_types import SOURCE_TYPES, configurable_types
from agnes.services.sources import ConfiguredSource, Source

SourceName = Annotated[str, PathParameter(description="The source's name, e.g. `sample`.", max_length=200)]
Schedule = Annotated[str, Meta(max_length=200, description=SCHEDULE_HINT)]


def _type_docs() -> str:
    lines = []
    for name in configurable_types():
        t = SOURCE_TYPES[name]
        own = [f"`{o.name}`" + (" (required)" if o.required else "") for o in t.options]
        own += [f"`{s.name}` (secret)" for s in t.secrets] + (["`secrets` (object of ENV_NAME → value)"]
                                                              if t.open_secrets else [])
        lines.append(f"- `{name}`: {t.description} Fields: {', '.join(own) or 'none'}.")
    return "\n".join(lines)


CONFIGURE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["data_source"],
    "properties": {
        "data_source": {"type": "string", "enum": configurable_types(), "description": "The source type."},
        "name": {"type": "string", "maxLength": 63, "description": "Source name (default: the type; for custom: "
                 "the connector). ^[a-z][a-z0-9_]{0,62}$, not a DuckDB keyword."},
        "schedule": {"type": ["string", "null"], "maxLength": 200, "description": SCHEDULE_HINT},
        "visible_to_all": {"type": "boolean", "description": "Every user may read its tables (default false)."},
    },
    "additionalProperties": True,
    "description": "The type's own options and secrets sit beside these fields; unknown fields are refused.\n"
                   + _type_docs(),
    "examples": [{"data_source": "sample"}, {"data_source": "csv", "name": "sales"},
                 SOURCE_TYPES["custom"].examples],
}


class UpdateSourceRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    schedule: Schedule | None | msgspec.UnsetType = msgspec.UNSET
    visible_to_all: bool | msgspec.UnsetType = msgspec.UNSET


class SourcesController(Controller):
    path = "/api/admin"
    tags = ["sources"]
    guards = [requires_admin, known_query_only]

    @post(
        "/configure",
        operation_id="configureSource",
        summary="Create or update a source",
        description="Idempotent: the same body twice changes nothing (`changed: []`). Fields you omit keep their "
                    "value. Secrets are stored encrypted and answered masked. The check runs live first; on any "
                    "error nothing is stored.",
        status_code=200,
        responses=documented(*AUTH_ERRORS, "validation_failed", "unsupported_data_source", "invalid_source_name",
                             "unknown_option", "invalid_option", "missing_credentials", "source_type_conflict",
                             "source_check_failed", "connector_not_found", "invalid_schedule"),
    )
    async def configure(
        self, instance: InstanceDep, current_user: CurrentUser, ip: ClientIp,
        data: Annotated[dict[str, Any], Body(schema_extra=CONFIGURE_SCHEMA)],
    ) -> ConfiguredSource:
        return await sources_service.configure(instance, current_user, data, ip=ip)

    @get("/sources", operation_id="listSources", summary="Sources with status, last sync, schedule, visibility",
         responses=documented(*AUTH_ERRORS, "validation_failed"))
    async def list_sources(self, instance: InstanceDep) -> ItemList[Source]:
        found = await sources_service.list_sources(instance)
        return ItemList(items=found, count=len(found))

    @get("/sources/{name:str}", operation_id="getSource", summary="One source",
         responses=documented(*AUTH_ERRORS, "validation_failed", "source_not_found"))
    async def get_source(self, instance: InstanceDep, name: SourceName) -> Source:
        return await sources_service.get_source(instance, name)

    @patch(
        "/sources/{name:str}",
        operation_id="updateSource",
        summary="Change a source's schedule (cron, UTC) or visibility",
        responses=documented(*AUTH_ERRORS, "validation_failed", "source_not_found", "invalid_schedule",
                             "empty_update"),
    )
    async def update_source(
        self, instance: InstanceDep, current_user: CurrentUser, ip: ClientIp, name: SourceName,
        data: Annotated[UpdateSourceRequest, Body(schema_extra=STRICT)],
    ) -> Source:
        return await sources_service.update_source(instance, current_user, name, schedule=data.schedule,
                                                   visible_to_all=data.visible_to_all, ip=ip)

    @delete(
        "/sources/{name:str}",
        operation_id="deleteSource",
        opt={"query": ("confirm",)},
        summary="Delete a source with its data, registry entries, grants and uploads",
        responses=documented(*AUTH_ERRORS, "validation_failed", "source_not_found", "confirmation_required",
                             "source_busy"),
    )
    async def delete_source(
        self, instance: InstanceDep, current_user: CurrentUser, ip: ClientIp, name: SourceName,
        confirm: Annotated[str | None, QueryParameter(description="The source's name again.", max_length=200)] = None,
    ) -> None:
        await sources_service.delete_source(instance, current_user, name, confirm=confirm, ip=ip)

    @post(
        "/discover-and-register",
        operation_id="discoverAndRegister",
        opt={"query": ("source", "dry_run")},
        summary="Discover tables and register the new ones",
        description="Idempotent; never overwrites fields an admin edited. Reports registered, skipped (already "
                    "registered), drifted (columns changed), invalid (unusable or clashing names, never merged) "
                    "and missing tables per source. `dry_run=true` reports without changing anything.",
        status_code=200,
        responses=documented(*AUTH_ERRORS, "validation_failed", "source_not_found"),
    )
    async def discover_and_register(
        self, instance: InstanceDep, current_user: CurrentUser, ip: ClientIp,
        source: Annotated[str | None, QueryParameter(description="Only this source (default: all).",
                                                     max_length=200)] = None,
        dry_run: Annotated[bool, QueryParameter(description="Report only; change nothing.")] = False,
    ) -> DiscoveryResult:
        return await registry.discover_and_register(instance, current_user, source=source, dry_run=dry_run, ip=ip)
