"""Structured diagnostics for people, AI agents, smoke tests and container health checks."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from typing import Literal

import msgspec

from agnes.control import health_errors
from agnes.services.instance import Instance

CheckStatus = Literal["ok", "warn", "fail"]
Status = Literal["healthy", "degraded", "unhealthy"]


class Check(msgspec.Struct, frozen=True):
    status: CheckStatus
    detail: str


class ErrorEntry(msgspec.Struct, frozen=True, omit_defaults=True):
    id: int
    at: str
    code: str
    source: str | None = None
    message: str | msgspec.UnsetType = msgspec.UNSET


class HealthReport(msgspec.Struct, frozen=True):
    status: Status
    setup_required: bool
    version: str
    channel: str
    commit: str
    schema_version: int
    checks: dict[str, Check]
    warnings: list[str]
    errors: list[ErrorEntry]


async def _control_plane(instance: Instance) -> Check:
    try:
        version = await asyncio.wait_for(instance.control.ping(), timeout=5)
    except Exception as exc:  # noqa: BLE001 — any failure here is the diagnosis
        return Check("fail", f"control plane unreachable: {exc}")
    return Check("ok", f"SQLite schema {version}")


def _data_dir(instance: Instance, admin: bool) -> Check:
    folder = str(instance.settings.data_dir) if admin else "the data folder"  # no paths for anonymous callers
    probe = instance.settings.state_dir / f".health-{uuid.uuid4().hex}"
    try:
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        return Check("fail", f"{folder} is not writable: {exc.strerror or type(exc).__name__}")
    return Check("ok", f"{folder} is writable")


def _disk(instance: Instance) -> Check:
    cfg = instance.settings.health
    free_mb = shutil.disk_usage(instance.settings.data_dir).free // (1024 * 1024)
    detail = f"{free_mb} MiB free on the data volume"
    if free_mb < cfg.disk_fail_free_mb:
        return Check("fail", f"{detail} (below {cfg.disk_fail_free_mb} MiB: free space or grow the volume)")
    if free_mb < cfg.disk_warn_free_mb:
        return Check("warn", f"{detail} (below {cfg.disk_warn_free_mb} MiB)")
    return Check("ok", detail)


async def health_report(instance: Instance, *, include_messages: bool) -> HealthReport:
    """`include_messages`: the caller is an admin. Anyone may read health (load balancers, the
    smoke test), so for everyone else it names no table, file path or raw error text -- except in
    setup mode, where whoever installs has no admin to ask and nothing is served yet."""
    setup_required = await instance.refresh_setup_required()
    admin = include_messages or setup_required
    checks = {
        "control_plane": await _control_plane(instance),
        "data_dir": await asyncio.to_thread(_data_dir, instance, admin),
        "disk": await asyncio.to_thread(_disk, instance),
    }
    private = list(instance.warnings)  # configuration and provisioning: keys, lines, source names
    if instance.serving is not None:
        status_, detail = instance.serving.health(detailed=admin)
        checks["catalog"] = Check(status_, detail)
        private += instance.serving.warnings()  # table names shared by sources
    warnings = list(instance.release_warnings)
    if admin:
        warnings += private
    elif private:
        warnings.append(f"{len(private)} more warning(s) about the configuration or the catalog: "
                        "GET /api/health with an admin's token lists them.")
    errors: list[ErrorEntry] = []
    if checks["control_plane"].status != "fail":
        async with instance.control.read() as conn:
            for err in await health_errors.open_errors(conn):
                message = err.message if include_messages and err.message else msgspec.UNSET
                errors.append(ErrorEntry(id=err.id, at=err.at, code=err.code, source=err.source, message=message))
    statuses = {c.status for c in checks.values()}
    if "fail" in statuses:
        status: Status = "unhealthy"
    elif "warn" in statuses or errors:
        status = "degraded"
    else:
        status = "healthy"
    build = instance.build
    return HealthReport(
        status=status,
        setup_required=setup_required,
        version=build.version,
        channel=build.channel,
        commit=build.commit,
        schema_version=instance.schema_version,
        checks=checks,
        warnings=warnings,
        errors=errors,
    )
