"""The non-secret export `$DATA_DIR/config/instance.yaml`, rewritten on every change.

It lists every source as the configure body that recreates it, with secrets
only as `${ENV_NAME}` references, plus the settings sections of the
provisioning file (known keys only, so a secret someone put there by mistake
is never copied). By default the export *is* the provisioning file read at
the next start, so it has to be something `apply_provisioning` accepts.

Written inside the caller's control-plane transaction: writes are serialized
by the write lock, so the file always reflects the latest committed state,
and a failed write rolls the change back instead of leaving them apart.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path
from typing import Any

import aiosqlite
import yaml

from agnes.control import sources as sources_repo
from agnes.control.db import utcnow_iso
from agnes.errors import AgnesError
from agnes.services.source_types import type_of
from agnes.settings import FILE_KEYS, Settings

HEADER = """\
# Agnes configuration export: written by Agnes after every configuration change
# (POST /api/admin/configure, PATCH/DELETE /api/admin/sources, the wizard).
# It holds no secrets: they appear as ${ENV_NAME} references only.
# Unless AGNES_CONFIG points elsewhere this is also the provisioning file read at
# start: each source below is applied idempotently, and a ${ENV_NAME} that is not
# set keeps the secret already stored. Edit it only while Agnes is stopped.
# External (inbox) sources are not listed: the inbox registers them.
# Written at: @AT@
"""


def default_secret_ref(source_type: str, key: str) -> str:
    """The env var an exported secret refers to when none was recorded."""
    stype = type_of(source_type)
    spec = next((s for s in stype.secrets if s.name == key), None) if stype else None
    if spec is not None:
        return spec.fallback_env or spec.env
    return key if stype is not None and stype.open_secrets else key.upper()


def export_entry(row: dict[str, Any], refs: dict[str, str | None]) -> dict[str, Any]:
    """One source as the provisioning entry (= configure body) that recreates it."""
    stype = type_of(row["type"])
    entry: dict[str, Any] = {"name": row["name"], "data_source": row["type"], **row["options"]}
    for key, ref in sorted(refs.items()):
        reference = "${" + (ref or default_secret_ref(row["type"], key)) + "}"
        if stype is not None and stype.open_secrets:
            entry.setdefault("secrets", {})[key] = reference
        else:
            entry[key] = reference
    if row["schedule"]:
        entry["schedule"] = row["schedule"]
    entry["visible_to_all"] = row["visible_to_all"]
    return entry


def settings_sections(settings: Settings) -> dict[str, Any]:
    """The provisioning file's known settings (instance:, server: ...), as written there."""
    try:
        data = yaml.safe_load(settings.config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    if not isinstance(data, dict):
        return {}
    sections: dict[str, Any] = {}
    for section, values in data.items():
        if isinstance(values, dict):
            kept = {k: v for k, v in values.items() if f"{section}.{k}" in FILE_KEYS}
            if kept:
                sections[str(section)] = kept
    return sections


def render(settings: Settings, rows: list[dict[str, Any]], refs: dict[str, dict[str, str | None]]) -> str:
    entries = [export_entry(r, refs.get(r["name"], {})) for r in rows if r["type"] != "external"]
    body = yaml.safe_dump({**settings_sections(settings), "sources": entries}, sort_keys=False,
                          allow_unicode=True, default_flow_style=False)
    return HEADER.replace("@AT@", utcnow_iso()) + body


def atomic_write(path: Path, text: str) -> None:
    """temp file in the same folder + fsync + os.replace (+ fsync of the folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


async def write_export(conn: aiosqlite.Connection, settings: Settings) -> Path:
    """Rewrite the export from the control plane as `conn` sees it (call inside the change's transaction)."""
    text = render(settings, await sources_repo.list_all(conn), await sources_repo.secret_refs(conn))
    path = settings.export_config_path
    try:
        await asyncio.to_thread(atomic_write, path, text)
    except OSError as e:
        raise AgnesError("data_dir_unusable", f"The configuration export {path} cannot be written: "
                         f"{e.strerror or e}; the change was not applied.", status=500) from e
    return path
