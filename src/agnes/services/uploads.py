"""CSV uploads: stage a file for the csv connector, only after it passed every check.

The file is streamed to a hidden temp file beside its target (the connector
and discovery ignore dot-files), checked in full (encoding, binary, empty,
duplicate or empty header names, ragged rows, every value parses), then
renamed over `$DATA_DIR/uploads/<source>/<table>.csv` in one `os.replace`. A
bad file is deleted and leaves the staged file before it, and everything
published, untouched; the data is published by the source's next sync.

Beside each staged file, `.<table>.name` keeps the name it was uploaded
under: the connector describes the table with it, the registry shows it as
the native id, and an upload whose different name normalises to the same
table is reported (`warnings`), never merged silently.

A sync never reads this folder directly: `snapshot()` hard-links the staged
files into `.run-<id>/` under the folder lock an upload holds while it
replaces a file, and the connector reads that snapshot - an upload during a
sync cannot mix two versions of a file into one run.

What a killed process leaves behind (`.upload-*` temp files, `.run-*`
snapshots) is removed at start by `cleanup_leftovers`; files still locked
by a live upload or sync are left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

import msgspec

from agnes.control import audit
from agnes.durable import fsync_dir
from agnes.errors import AgnesError
from agnes.extract.names import normalize_table_name
from agnes.models import User
from agnes.services.csv_checks import CsvProblem, inspect_csv
from agnes.services.instance import Instance
from agnes.services.source_types import Column

log = logging.getLogger(__name__)

CHUNK = 1 << 20
TEMP_PREFIX = ".upload-"  # a file being uploaded (flock held by its writer)
SNAPSHOT_PREFIX = ".run-"  # the files a running sync reads (flock held by the sync)
LOCK_FILE = ".lock"  # held while a staged file is replaced or a snapshot taken
NAME_SUFFIX = ".name"  # .<table>.name: the name the file was uploaded under
STALE_AFTER_SECONDS = 60  # an unlocked temp file or snapshot older than this is a leftover


class AsyncReadable(Protocol):
    async def read(self, size: int = -1) -> bytes: ...


class StagedFile(msgspec.Struct, frozen=True, kw_only=True):
    source: str
    table: str  # the table id will be <source>.<table>
    file: str  # name in the upload folder: <table>.csv
    original_name: str
    size_bytes: int
    rows: int
    columns: list[Column]
    replaced: bool  # an earlier upload of this table was replaced
    next_step: str
    # e.g. the replaced file was uploaded under another name that normalises to the same table
    warnings: list[str] = msgspec.field(default_factory=list)


def name_file(folder: Path, table: str) -> Path:
    """The sidecar keeping the name `<table>.csv` was uploaded under."""
    return folder / f".{table}{NAME_SUFFIX}"


def original_name(folder: Path, table: str) -> str | None:
    """The name the staged file of `table` was uploaded under (None: unknown, e.g. staged by hand)."""
    try:
        return name_file(folder, table).read_text("utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def original_names(folder: Path) -> dict[str, str]:
    """table -> the name its staged file was uploaded under, for every table that has one."""
    if not folder.is_dir():
        return {}
    found = {}
    for path in folder.iterdir():
        if path.name.startswith(".") and path.name.endswith(NAME_SUFFIX) and path.is_file():
            table = path.name[1:-len(NAME_SUFFIX)]
            name = original_name(folder, table)
            if name and (folder / f"{table}.csv").is_file():
                found[table] = name
    return found


def _display_name(filename: str | None) -> str:
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1].replace("\x00", "").strip()
    name = "".join(" " if c in "\r\n\t\v\f" else c for c in name)  # one line: kept in a sidecar, shown in logs
    if not name or name in (".", ".."):
        raise AgnesError("invalid_csv", "The upload has no file name, so no table name can be derived from it.",
                         hint='Send the file as multipart field "file" with a filename to POST '
                              "/api/admin/uploads?source=NAME, e.g. curl -F 'file=@orders.csv' ...")
    return name[:255]


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """Exclusive flock on uploads/<source>/.lock: a replace (data + name) and a snapshot never interleave."""
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


async def _save(stream: AsyncReadable, out: BinaryIO) -> int:
    size = 0
    while chunk := await stream.read(CHUNK):
        size += len(chunk)
        await asyncio.to_thread(out.write, chunk)
    await asyncio.to_thread(out.flush)
    await asyncio.to_thread(os.fsync, out.fileno())
    return size


def _put(folder: Path, temp: Path, target: Path, table: str, shown: str) -> tuple[bool, str | None]:
    """Rename the checked temp file over `target` and record its name; returns (replaced, its old name)."""
    sidecar = name_file(folder, table)
    name_temp = folder / f"{TEMP_PREFIX}{uuid.uuid4().hex}{NAME_SUFFIX}"
    with _folder_lock(folder):
        replaced = target.exists()
        before = original_name(folder, table) if replaced else None
        name_temp.write_text(shown + "\n", "utf-8")
        os.replace(temp, target)
        os.replace(name_temp, sidecar)
    fsync_dir(folder)
    return replaced, before


def _replaced_warning(shown: str, before: str, table: str) -> str:
    return (f"{shown!r} replaced the file uploaded earlier as {before!r}: both names become table {table!r}, "
            "so only this file is staged now. If they hold different data, rename one file so the names "
            "differ after normalisation (letters, digits and _ only, lower case) and upload it again; the "
            "published data of that table changes only at the next sync.")


async def stage_upload(instance: Instance, actor: User, source: str, filename: str | None,
                       stream: AsyncReadable, ip: str | None = None) -> StagedFile:
    """Check and stage one uploaded CSV file as a table of csv source `source`."""
    from agnes.services.sources import get_source

    found = await get_source(instance, source)
    if found.type != "csv":
        raise AgnesError("wrong_source_type", f"Source {source!r} has data_source {found.type!r}; uploads go to a "
                         "csv source.", hint='Create one with POST /api/admin/configure {"data_source": "csv"} and '
                         "upload with ?source=csv (or its name).")
    shown = _display_name(filename)
    try:
        table = normalize_table_name(shown.rsplit(".", 1)[0] if "." in shown[1:] else shown)
    except ValueError as e:
        raise AgnesError("invalid_csv", f"{shown}: {e}", hint="Rename the file so its name has letters or digits, "
                         "e.g. orders_2024.csv (the table name comes from it), and send "
                         "POST /api/admin/uploads?source=NAME again.") from None
    folder = instance.settings.uploads_dir / source
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{table}.csv"
    temp = folder / f"{TEMP_PREFIX}{uuid.uuid4().hex}.csv"
    try:
        with temp.open("wb") as out:
            fcntl.flock(out.fileno(), fcntl.LOCK_EX)  # start-up cleanup leaves a locked temp file alone
            size = await _save(stream, out)
            try:
                info = await asyncio.to_thread(inspect_csv, temp, display_name=shown, full=True)
            except CsvProblem as e:
                raise AgnesError("invalid_csv", str(e)) from None
            replaced, before = await asyncio.to_thread(_put, folder, temp, target, table, shown)
    finally:
        temp.unlink(missing_ok=True)
    warnings = [_replaced_warning(shown, before, table)] if before is not None and before != shown else []
    async with instance.control.transaction() as conn:
        await audit.record(conn, action="csv_uploaded", actor=actor.email, actor_user_id=actor.id,
                           target=f"table:{source}.{table}", ip=ip,
                           detail={"file": shown, "size_bytes": size, "rows": info.rows, "replaced": replaced,
                                   **({"replaced_file": before} if before is not None else {})})
    return StagedFile(
        source=source, table=table, file=target.name, original_name=shown, size_bytes=size, rows=info.rows or 0,
        columns=[Column(n, t) for n, t in info.columns], replaced=replaced, warnings=warnings,
        next_step=f'Publish it with POST /api/sync/trigger {{"source": "{source}"}}; until then queries see the '
                  "previous data.",
    )


# --- what a sync reads ---------------------------------------------------------------------


def _staged(path: Path) -> bool:
    """A file the connector reads: a visible .csv or a name sidecar."""
    if not path.is_file() or path.is_symlink():
        return False
    if path.name.startswith("."):
        return path.name.endswith(NAME_SUFFIX) and not path.name.startswith(TEMP_PREFIX)
    return path.suffix.lower() == ".csv"


def take_snapshot(folder: Path) -> tuple[Path, int]:
    """Hard-link the staged files into `folder/.run-<id>/` (locked); release with `drop_snapshot`.

    Hard links are the files as they are now: a later upload renames a new file over the name
    in `folder` and leaves the snapshot's inode alone.
    """
    snap = folder / f"{SNAPSHOT_PREFIX}{uuid.uuid4().hex}"
    with _folder_lock(folder):
        snap.mkdir()
        fd = os.open(snap, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            for path in sorted(folder.iterdir()):
                if _staged(path):
                    try:
                        os.link(path, snap / path.name)
                    except OSError:  # a file system without hard links: a copy keeps mtime too
                        shutil.copy2(path, snap / path.name)
        except BaseException:
            os.close(fd)
            shutil.rmtree(snap, ignore_errors=True)
            raise
    return snap, fd


def drop_snapshot(snap: Path, fd: int) -> None:
    shutil.rmtree(snap, ignore_errors=True)
    os.close(fd)


def _unlocked(path: Path) -> bool:
    """True when no live process holds an flock on `path` (we briefly take and drop one)."""
    try:
        fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def cleanup_leftovers(uploads_dir: Path, *, stale_after: float = STALE_AFTER_SECONDS) -> list[Path]:
    """At start: remove `.upload-*` temp files and `.run-*` snapshots a killed process left behind.

    A worker may start while the server is uploading or syncing: anything still locked, or
    younger than `stale_after` seconds (created but not locked yet), is left alone.
    """
    removed: list[Path] = []
    if not uploads_dir.is_dir():
        return removed
    cutoff = time.time() - stale_after
    for source_dir in sorted(p for p in uploads_dir.iterdir() if p.is_dir() and not p.is_symlink()):
        for entry in sorted(source_dir.iterdir()):
            if not entry.name.startswith((TEMP_PREFIX, SNAPSHOT_PREFIX)) or entry.is_symlink():
                continue
            try:
                if entry.lstat().st_mtime > cutoff or not _unlocked(entry):
                    continue
                if entry.is_dir():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                removed.append(entry)
            except OSError as e:
                log.warning("could not remove the upload leftover %s: %s", entry, e)
    return removed
