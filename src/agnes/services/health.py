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


def _data_dir(instance: Instance) -> Check:
    probe = instance.settings.state_dir / f".health-{uuid.uuid4().hex}"
    try:
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        return Check("fail", f"{instance.settings.data_dir} is not writable: {exc.strerror or exc}")
    return Check("ok", f"{instance.settings.data_dir} is writable")


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
    checks = {
        "control_plane": await _control_plane(instance),
        "data_dir": await asyncio.to_thread(_data_dir, instance),
        "disk": await asyncio.to_thread(_disk, instance),
    }
    warnings = [*instance.warnings, *instance.release_warnings]
    if instance.serving is not None:
        status_, detail = instance.serving.health()
        checks["catalog"] = Check(status_, detail)
        warnings += instance.serving.warnings()
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
        setup_required=await instance.refresh_setup_required(),
        version=build.version,
        channel=build.channel,
        commit=build.commit,
        schema_version=instance.schema_version,
        checks=checks,
        warnings=warnings,
        errors=errors,
    )
