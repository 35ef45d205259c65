"""CSV uploads: stage a file for the csv connector, only after it passed every check.

The file is streamed to a hidden temp file beside its target (the connector
and discovery ignore dot-files), checked in full (encoding, binary, empty,
duplicate headers, ragged rows, every value parses), then renamed over
`$DATA_DIR/uploads/<source>/<table>.csv` in one `os.replace`. A bad file is
deleted and leaves the staged file before it, and everything published,
untouched; the data is published by the source's next sync.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Protocol

import msgspec

from agnes.control import audit
from agnes.durable import fsync_dir
from agnes.errors import AgnesError
from agnes.extract.names import normalize_table_name
from agnes.models import User
from agnes.services.csv_checks import CsvProblem, inspect_csv
from agnes.services.instance import Instance
from agnes.services.source_types import Column

CHUNK = 1 << 20


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


def _display_name(filename: str | None) -> str:
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1].replace("\x00", "").strip()
    if not name or name in (".", ".."):
        raise AgnesError("invalid_csv", "The upload has no file name, so no table name can be derived from it.",
                         hint='Send the file as multipart field "file" with a filename to POST '
                              "/api/admin/uploads?source=NAME, e.g. curl -F 'file=@orders.csv' ...")
    return name[:255]


async def _save(stream: AsyncReadable, target: Path) -> int:
    size = 0
    with target.open("wb") as out:
        while chunk := await stream.read(CHUNK):
            size += len(chunk)
            await asyncio.to_thread(out.write, chunk)
        await asyncio.to_thread(out.flush)
        await asyncio.to_thread(os.fsync, out.fileno())
    return size


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
    temp = folder / f".upload-{uuid.uuid4().hex}.csv"
    try:
        size = await _save(stream, temp)
        try:
            info = await asyncio.to_thread(inspect_csv, temp, display_name=shown, full=True)
        except CsvProblem as e:
            raise AgnesError("invalid_csv", str(e)) from None
        replaced = target.exists()
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    await asyncio.to_thread(fsync_dir, folder)
    async with instance.control.transaction() as conn:
        await audit.record(conn, action="csv_uploaded", actor=actor.email, actor_user_id=actor.id,
                           target=f"table:{source}.{table}", ip=ip,
                           detail={"file": shown, "size_bytes": size, "rows": info.rows, "replaced": replaced})
    return StagedFile(
        source=source, table=table, file=target.name, original_name=shown, size_bytes=size, rows=info.rows or 0,
        columns=[Column(n, t) for n, t in info.columns], replaced=replaced,
        next_step=f'Publish it with POST /api/sync/trigger {{"source": "{source}"}}; until then queries see the '
                  "previous data.",
    )
