"""Downloads for local analysis: the manifest of readable local tables, and one table as Parquet.

Same read rule as everywhere (services/permissions.py). The data comes from
the run the serving catalog serves now, held (shared lock) for the whole
download so publishing cannot prune it underneath. Hashes are content hashes
(engine/export.py) cached per (run, table): runs never change once published.
Each download (not a 304) is written to the audit log.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec

from agnes.control import audit
from agnes.engine.export import ExportError, TableData, content_hash, locate, parquet_chunks
from agnes.engine.publish import hold_run, release_run
from agnes.errors import AgnesError
from agnes.models import User
from agnes.services.catalog import iso_utc, table_not_found
from agnes.services.instance import Instance
from agnes.services.permissions import access_for
from agnes.services.query import executor_of

_HASHES: OrderedDict[tuple[str, str], str] = OrderedDict()
_HASHES_SIZE = 20_000


class ManifestEntry(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    rows: int | None
    size_bytes: int | None
    extracted_at: str | None
    hash: str  # content hash: unchanged data keeps it across syncs; also the download's ETag


class Manifest(msgspec.Struct, frozen=True):
    items: list[ManifestEntry]
    count: int


@dataclass
class Download:
    """A download that is ready to stream (files opened, the run held)."""

    table_id: str
    etag: str
    body: AsyncIterator[bytes] | None  # None: the client already has this version (304)
    size: int | None  # bytes, when the stored file is sent as it is
    exact: bool  # the bytes are the stored file's (a strong ETag); else re-encoded (weak)


async def _hash(run: Path, data: TableData) -> str:
    key = (str(run), data.name)
    found = _HASHES.get(key)
    if found is None:
        found = await asyncio.to_thread(content_hash, data)
        _HASHES[key] = found
        while len(_HASHES) > _HASHES_SIZE:
            _HASHES.popitem(last=False)
    return found


def _run_of(instance: Instance, source: str) -> Path:
    assert instance.serving is not None
    run = instance.serving.catalog.sources.get(source)
    if run is None:
        raise AgnesError("data_unavailable", "The table's source is being re-attached right now.")
    return run


async def manifest(instance: Instance, user: User) -> Manifest:
    executor_of(instance)  # 503 while the catalog loads
    assert instance.serving is not None
    access = await access_for(instance, user)
    items = []
    for table in instance.serving.catalog.tables():
        if table.query_mode != "local" or not access.can_read(table.id):
            continue
        run = _run_of(instance, table.source)
        try:
            data = await asyncio.to_thread(locate, run, table.name)
        except (ExportError, OSError):
            continue  # listed by the catalog (status), but nothing to download
        items.append(ManifestEntry(id=table.id, rows=table.rows, size_bytes=table.size_bytes,
                                   extracted_at=iso_utc(table.extracted_at), hash=await _hash(run, data)))
    return Manifest(items=items, count=len(items))


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = [t.strip().removeprefix("W/").strip('"') for t in if_none_match.split(",")]
    return "*" in tags or etag in tags


async def open_download(instance: Instance, user: User, table_id: str, *, if_none_match: str | None = None,
                        ip: str | None = None) -> Download:
    executor_of(instance)
    assert instance.serving is not None
    access = await access_for(instance, user)
    table = next((t for t in instance.serving.catalog.tables() if t.id == table_id), None)
    if table is None or not access.can_read(table_id):
        raise table_not_found(table_id, "List the tables you can download with GET /api/data/manifest.")
    if table.query_mode != "local":
        raise AgnesError("table_is_remote", f"{table_id} is served from a remote database; it has no local data.",
                         hint=f"Query it instead: POST /api/query {{\"sql\": \"SELECT * FROM {table_id} LIMIT 1000\"}}"
                              " (Accept: application/vnd.apache.arrow.stream for large results).")
    run = _run_of(instance, table.source)
    try:
        hold = hold_run(run)
    except OSError:
        raise AgnesError("data_unavailable") from None
    try:
        data = await asyncio.to_thread(locate, run, table.name)
        etag = await _hash(run, data)
        if etag_matches(if_none_match, etag):
            release_run(hold)
            return Download(table_id, etag, None, None, data.exact)
        chunks = parquet_chunks(data)
        await asyncio.to_thread(next, chunks)  # open the file / start the reader before answering
        size = data.files[0].stat().st_size if data.exact else None
    except (ExportError, OSError) as exc:
        release_run(hold)
        raise AgnesError("data_unavailable", f"The data of {table_id} could not be read: "
                         f"{type(exc).__name__}.") from None
    except BaseException:
        release_run(hold)
        raise
    async with instance.control.transaction() as conn:
        await audit.record(conn, action="table_downloaded", actor=user.email, actor_user_id=user.id,
                           target=f"table:{table_id}", detail={"hash": etag}, ip=ip)
    return Download(table_id, etag, _stream(chunks, hold), size, data.exact)


async def _stream(chunks: Iterator[bytes], hold: int) -> AsyncIterator[bytes]:
    done = object()
    try:
        while (chunk := await asyncio.to_thread(next, chunks, done)) is not done:
            if chunk:
                yield chunk  # type: ignore[misc]
    finally:
        try:
            await asyncio.to_thread(chunks.close)
        finally:
            release_run(hold)  # even when cancelled while closing: the run must become prunable
