"""Start-up wiring shared by the server, the worker and CLI commands.

Everything that must be true before a request is served happens here, in
order: data folders exist, the control plane is migrated (with a backup and
a lock), instance secrets exist, the encryption key matches the one stored
credentials were encrypted with, and — while no user exists — a one-time
setup token is ready.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field

from agnes.control import kv
from agnes.control import users as users_repo
from agnes.control.db import ControlPlane
from agnes.control.migrate import MigrationError, MigrationReport, migrate
from agnes.engine.query import QueryExecutor
from agnes.errors import StartupError
from agnes.jobs.queue import JobQueue
from agnes.security.encryption import Encryptor
from agnes.security.secrets import InstanceSecrets, key_fingerprint, load_instance_secrets
from agnes.services.serving import CatalogService
from agnes.settings import Settings
from agnes.version import BuildInfo

log = logging.getLogger("agnes")


@dataclass
class Instance:
    """The wired dependencies of one running Agnes process."""

    settings: Settings
    control: ControlPlane
    secrets: InstanceSecrets
    encryptor: Encryptor
    build: BuildInfo
    setup_required: bool
    schema_version: int
    warnings: list[str] = field(default_factory=list)
    release_warnings: list[str] = field(default_factory=list)  # from the release manifest (services/releases)
    jobs: JobQueue | None = None  # set by agnes.jobs.runtime (server) or the arq worker
    serving: CatalogService | None = None  # the serving catalog; only the server process has one
    query: QueryExecutor | None = None  # runs guarded user SQL on `serving`; only the server process has one

    async def close(self) -> None:
        await self.control.close()

    async def refresh_setup_required(self) -> bool:
        """Re-read from the control plane: another process may have bootstrapped."""
        if self.setup_required:
            async with self.control.read() as conn:
                self.setup_required = await users_repo.count(conn) == 0
        return self.setup_required


def ensure_data_dirs(settings: Settings) -> None:
    folders = [
        settings.state_dir,
        settings.backups_dir,
        settings.export_config_path.parent,
        settings.extracts_dir,
        settings.analytics_dir,
        settings.inbox_dir,
        settings.uploads_dir,
    ]
    try:
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
        os.chmod(settings.state_dir, 0o700)
        probe = settings.state_dir / f".write-probe-{os.getpid()}"  # per process: starters may race
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise StartupError(
            "data_dir_unusable", f"The data directory {settings.data_dir} is not usable: {exc.strerror or exc}"
        ) from exc


def secrets_env(settings: Settings) -> dict[str, str]:
    s = settings.secrets
    pairs = {
        "JWT_SECRET_KEY": s.jwt_secret_key,
        "SESSION_SECRET": s.session_secret,
        "AGNES_ENCRYPTION_KEY": s.encryption_key,
    }
    return {name: value for name, value in pairs.items() if value}


async def start_instance(settings: Settings, *, serve: bool = True) -> Instance:
    """Prepare the data directory and open the control plane.

    `serve=False` (worker, CLI) skips the setup token: only the server hands it out.
    """
    ensure_data_dirs(settings)
    report = await _migrate(settings)
    if report.applied:
        log.info("control plane migrated from schema %s to %s", report.from_version, report.to_version)
    secrets = load_instance_secrets(settings.state_dir, secrets_env(settings))
    control = await ControlPlane.open(settings.control_db_path)
    try:
        await _check_encryption_key(control, secrets.encryption_key)
        async with control.read() as conn:
            setup_required = await users_repo.count(conn) == 0
        instance = Instance(
            settings=settings,
            control=control,
            secrets=secrets,
            encryptor=Encryptor(secrets.encryption_key),
            build=settings.build,
            setup_required=setup_required,
            schema_version=report.to_version,
            warnings=list(settings.warnings),
        )
        if serve:
            from agnes.services.setup import prepare_setup_token

            await prepare_setup_token(instance)
            from agnes.services.provisioning import apply_provisioning

            await apply_provisioning(instance)  # sources declared in config/instance.yaml
        return instance
    except BaseException:
        await control.close()
        raise


async def _migrate(settings: Settings) -> MigrationReport:
    try:
        return await asyncio.to_thread(migrate, settings.control_db_path, settings.backups_dir)
    except MigrationError as exc:
        raise StartupError("migration_failed", str(exc)) from exc


async def _check_encryption_key(control: ControlPlane, key: bytes) -> None:
    fingerprint = key_fingerprint(key)
    async with control.transaction() as conn:
        stored = await kv.put_if_absent(conn, kv.ENCRYPTION_KEY_FINGERPRINT, fingerprint)
    if stored != fingerprint:
        raise StartupError(
            "encryption_key_mismatch",
            "The encryption key (AGNES_ENCRYPTION_KEY or state/.encryption_key) is not the one this instance's "
            f"stored credentials were encrypted with (fingerprint {fingerprint[:8]}…, expected {stored[:8]}…).",
        )


async def forget_encryption_key(settings: Settings) -> None:
    """Drop the stored key fingerprint so a new key is accepted at the next start."""
    ensure_data_dirs(settings)
    await _migrate(settings)
    control = await ControlPlane.open(settings.control_db_path)
    try:
        async with control.transaction() as conn:
            await kv.delete(conn, kv.ENCRYPTION_KEY_FINGERPRINT)
            from agnes.control import audit

            await audit.record(conn, action="encryption_key_reset", actor="cli")
    finally:
        await control.close()
