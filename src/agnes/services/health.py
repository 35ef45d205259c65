"""Structured diagnostics for people, AI agents, smoke tests and container health checks."""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid
from typing import Literal

import msgspec

from agnes.control import health_errors
from agnes.errors import AgnesError
from agnes.services.instance import Instance

log = logging.getLogger("agnes.health")

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


async def _control_plane(instance: Instance, admin: bool) -> Check:
    try:
        version = await asyncio.wait_for(instance.control.ping(), timeout=5)
    except Exception as exc:  # noqa: BLE001 — any failure here is the diagnosis
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        log.error("health: the control plane does not answer: %s", reason)
        if admin:
            return Check("fail", f"control plane unreachable: {reason}")
        # raw error text can name files and paths: not for anonymous callers (the server log has it)
        return Check("fail", "control plane unreachable: the server log names the error; check the data "
                     "volume (free space, permissions) and restart Agnes")
    return Check("ok", f"SQLite schema {version}")


async def _job_warnings(instance: Instance, admin: bool) -> list[str]:
    """arq mode (REDIS_URL): jobs stay queued and schedules never run while no `agnes worker` is alive."""
    queue = instance.jobs
    worker_seen = getattr(queue, "worker_seen", None)
    if queue is None or queue.kind != "arq" or worker_seen is None:
        return []  # embedded: this server runs jobs and schedules itself
    from agnes.jobs.worker import HEALTH_SECONDS

    try:
        seen = await asyncio.wait_for(worker_seen(), timeout=1.5)  # a health probe must stay quick
    except (AgnesError, TimeoutError) as exc:
        reason = exc.message if isinstance(exc, AgnesError) else "no answer within 1.5 s"
        return [("The job queue (Redis) cannot be reached" + (f": {reason}" if admin else "") +
                 "; syncs are refused until it answers. Check that Redis runs and REDIS_URL points at it.")]
    if seen:
        return []
    return [f"No worker has reported in {HEALTH_SECONDS + 1} s: queued sync jobs wait and cron schedules never "
            "run. Start `agnes worker` (same REDIS_URL and DATA_DIR as the server; `docker compose up -d worker`)."]


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
    try:
        setup_required = await instance.refresh_setup_required()
    except Exception:  # noqa: BLE001 — a dead control plane is reported by its check below, as 503
        setup_required = instance.setup_required  # the last value read
    admin = include_messages or setup_required
    checks = {
        "control_plane": await _control_plane(instance, admin),
        "data_dir": await asyncio.to_thread(_data_dir, instance, admin),
        "disk": await asyncio.to_thread(_disk, instance),
    }
    private = list(instance.warnings)  # configuration and provisioning: keys, lines, source names
    if instance.serving is not None:
        status_, detail = instance.serving.health(detailed=admin)
        checks["catalog"] = Check(status_, detail)
        private += instance.serving.warnings()  # table names shared by sources
    warnings = list(instance.release_warnings) + await _job_warnings(instance, admin)
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
