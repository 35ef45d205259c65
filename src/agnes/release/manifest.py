"""The release manifest: which versions exist, which are deprecated, what is newest.

Published by the release workflow (format and example in docs/releases.md),
fetched by running instances, turned into `/api/health` warnings. Unknown
fields are ignored so an older instance reads a newer manifest.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Literal

import msgspec

from agnes.release.calver import CHANNELS, parse_version

SCHEMA_VERSION = 1
GRACE_DAYS = 30  # a deprecated image's alias tag is removed after this


class ManifestError(Exception):
    """The manifest or a change to it is invalid."""


class VersionEntry(msgspec.Struct, kw_only=True, omit_defaults=True):
    version: str
    channel: Literal["dev", "stable"]
    status: Literal["current", "deprecated"]
    released_at: str | None = None  # ISO date
    deprecated_at: str | None = None
    removal_date: str | None = None  # the :deprecated-* alias tag goes away then
    message: str | None = None


class Manifest(msgspec.Struct, kw_only=True):
    schema_version: int = SCHEMA_VERSION
    generated_at: str | None = None
    latest: dict[str, str] = msgspec.field(default_factory=dict)  # channel -> newest current version
    versions: list[VersionEntry] = msgspec.field(default_factory=list)


def decode(raw: bytes | str) -> Manifest:
    try:
        manifest = msgspec.json.decode(raw, type=Manifest)
    except msgspec.DecodeError as exc:
        raise ManifestError(f"not a release manifest: {exc}") from None
    if manifest.schema_version != SCHEMA_VERSION:
        raise ManifestError(f"manifest schema_version {manifest.schema_version} is not {SCHEMA_VERSION}")
    return manifest


def encode(manifest: Manifest) -> bytes:
    return msgspec.json.format(msgspec.json.encode(manifest), indent=2) + b"\n"


def _key(version: str) -> tuple[int, int, int]:
    parsed = parse_version(version)
    if parsed is None:
        raise ManifestError(f"{version!r} is not a CalVer version YYYY.MM.N")
    return parsed


def _refresh_latest(manifest: Manifest, today: str) -> None:
    manifest.versions.sort(key=lambda v: _key(v.version), reverse=True)
    manifest.latest = {}
    for entry in manifest.versions:
        if entry.status == "current":
            manifest.latest.setdefault(entry.channel, entry.version)
    manifest.generated_at = today


def add_version(manifest: Manifest, version: str, channel: str, *, today: date | None = None) -> None:
    """Record a new build as current on its channel."""
    if channel not in CHANNELS:
        raise ManifestError(f"unknown channel {channel!r}; use one of {', '.join(CHANNELS)}")
    _key(version)
    day = (today or datetime.now(UTC).date()).isoformat()
    if any(v.version == version for v in manifest.versions):
        raise ManifestError(f"{version} is already in the manifest")
    manifest.versions.append(VersionEntry(version=version, channel=channel, status="current", released_at=day))  # type: ignore[arg-type]
    _refresh_latest(manifest, day)


def deprecate(manifest: Manifest, version: str, message: str, *, today: date | None = None,
              grace_days: int = GRACE_DAYS) -> VersionEntry:
    """Mark `version` deprecated from today; its alias tag is removed after `grace_days`."""
    entry = next((v for v in manifest.versions if v.version == version), None)
    if entry is None:
        raise ManifestError(f"{version} is not in the manifest")
    day = today or datetime.now(UTC).date()
    if entry.status != "deprecated":
        entry.status, entry.deprecated_at = "deprecated", day.isoformat()
        entry.removal_date = (day + timedelta(days=grace_days)).isoformat()
    entry.message = message or entry.message
    _refresh_latest(manifest, day.isoformat())
    return entry


def notices(manifest: Manifest, version: str, channel: str) -> list[str]:
    """Health warnings for an instance running `version` on `channel`."""
    warnings: list[str] = []
    own = next((v for v in manifest.versions if v.version == version), None)
    if own is not None and own.status == "deprecated":
        text = f"Running deprecated version {version}. Update to stable."
        if own.message:
            text += f" {own.message}"
        if own.removal_date:
            text += f" Its image tag is removed after {own.removal_date}; pinned installs must move."
        warnings.append(text)
    stable = manifest.latest.get("stable")
    mine = parse_version(version)
    if stable and mine and parse_version(stable) and _key(stable) > mine:
        warnings.append(f"Update available: stable {stable} (running {version} on {channel}). "
                        "Pull it with `docker compose pull && docker compose up -d`.")
    return warnings
