"""A source's files on disk: the connector's state folder, a stable snapshot of its inputs for one run,
and what deleted sources or killed uploads and syncs left behind (removed at start)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from agnes.control import sources as sources_repo
from agnes.services.instance import Instance
from agnes.services.source_types import staged_csv_files

if TYPE_CHECKING:
    from agnes.services.sources import RunSpec

log = logging.getLogger(__name__)


def source_state_dir(instance: Instance, name: str) -> Path:
    """The connector's AGNES_STATE_DIR for this source (kept between runs, removed with the source)."""
    return instance.settings.state_dir / "connectors" / name


def remove_files(instance: Instance, name: str) -> None:
    """After the commit: a leftover folder is logged, never a reason to undo the delete."""
    try:
        from agnes.engine.publish import remove_source

        remove_source(instance.settings.extracts_dir, name)
    except Exception:
        log.exception("source %s deleted, but its published runs could not be removed", name)
    for folder in (instance.settings.uploads_dir / name, source_state_dir(instance, name)):
        shutil.rmtree(folder, ignore_errors=True)


def _source_folders(instance: Instance) -> list[Path]:
    """Per-source folders whose name is a source name: extracts/<name>/, uploads/<name>/, connector state."""
    from agnes.engine.publish import SOURCE_RE

    found = []
    roots = (instance.settings.extracts_dir, instance.settings.uploads_dir, instance.settings.state_dir / "connectors")
    for root in roots:
        if root.is_dir():
            found += [p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and SOURCE_RE.match(p.name)]
    return found


async def cleanup_leftovers(instance: Instance) -> list[Path]:
    """At start: remove what a deleted source or a killed upload/sync left behind.

    Folders of sources that no longer exist (a delete whose file removal failed after the commit)
    would otherwise be picked up by a new source of the same name: its `previous` run, its uploads.
    The folders are listed BEFORE the source names are read, so a source created meanwhile is
    either in the list of names or its folder was not listed: never removed by mistake.
    """
    from agnes.engine.publish import remove_source
    from agnes.services import uploads

    removed = await asyncio.to_thread(uploads.cleanup_leftovers, instance.settings.uploads_dir)
    folders = await asyncio.to_thread(_source_folders, instance)
    async with instance.control.read() as conn:
        known = set(await sources_repo.names(conn))

    def remove(orphans: list[Path]) -> list[Path]:
        gone = []
        for folder in orphans:
            try:
                if folder.parent == instance.settings.extracts_dir:
                    remove_source(instance.settings.extracts_dir, folder.name)  # atomic for a serving reader
                else:
                    shutil.rmtree(folder)
                gone.append(folder)
            except Exception:
                log.exception("could not remove %s, left by deleted source %s", folder, folder.name)
        return gone

    removed += await asyncio.to_thread(remove, [f for f in folders if f.name not in known])
    return removed


@contextlib.asynccontextmanager
async def connector_inputs(spec: RunSpec) -> AsyncIterator[RunSpec]:
    """The spec to run the connector with, valid inside the block.

    csv: `files_dir` points at a snapshot of the staged files (hard links, services/uploads.py),
    removed afterwards, so an upload during the run cannot change what the connector reads.
    """
    from agnes.services import uploads

    files_dir = spec.config.get("files_dir") if spec.type == "csv" else None
    folder = Path(files_dir) if isinstance(files_dir, str) else None
    if folder is None or not await asyncio.to_thread(staged_csv_files, folder):
        yield spec  # nothing to read: the connector names the real folder in its message
        return
    snap, fd = await asyncio.to_thread(uploads.take_snapshot, folder)
    try:
        yield msgspec.structs.replace(spec, config={**spec.config, "files_dir": str(snap)})
    finally:
        await asyncio.to_thread(uploads.drop_snapshot, snap, fd)
