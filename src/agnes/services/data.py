"""Downloads for local analysis: the manifest of readable local tables, and one table as Parquet.

Same read rule as everywhere (services/permissions.py). The data comes from
the run the serving catalog serves now, held (shared lock) for the whole
download so publishing cannot prune it underneath. Hashes are content hashes
(engine/export.py) cached per (run, table): runs never change once published.
Each download (not a 304) is written to the audit log before any byte is sent;
if that fails, the reader and the hold are released at once. The body owns both
until it ends, is closed, or -- when the client left before the response started
and nothing iterated it -- is garbage-collected.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

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
    # content hash: unchanged data keeps it across syncs; also the download's ETag. None while
    # the table's data cannot be read right now (status "unavailable"): keep your local copy.
    hash: str | None
    status: Literal["ok", "unavailable"] = "ok"


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
        entry = ManifestEntry(id=table.id, rows=table.rows, size_bytes=table.size_bytes,
                              extracted_at=iso_utc(table.extracted_at), hash=None, status="unavailable")
        run = instance.serving.catalog.sources.get(table.source)
        try:
            if run is not None:  # None: the source is being re-attached right now
                data = await asyncio.to_thread(locate, run, table.name)
                entry = msgspec.structs.replace(entry, hash=await _hash(run, data), status="ok")
        except (ExportError, OSError):
            pass  # still listed: a client must not mistake "cannot read now" for "revoked"
        items.append(entry)
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
    body = DownloadBody(chunks, hold)  # from here on the body owns the reader and the hold
    try:
        async with instance.control.transaction() as conn:
            await audit.record(conn, action="table_downloaded", actor=user.email, actor_user_id=user.id,
                               target=f"table:{table_id}", detail={"hash": etag}, ip=ip)
    except BaseException:
        body.release()  # no audit row, no download: never keep the run held
        raise
    return Download(table_id, etag, body, size, data.exact)


_DONE = object()
_CLOSING: set[asyncio.Future[None]] = set()


def _release(chunks: Iterator[bytes], hold: int) -> None:
    try:
        chunks.close()  # type: ignore[attr-defined]
    except ValueError:
        pass  # a read is still running on its thread; the generator closes when it is collected
    finally:
        release_run(hold)  # the run must become prunable


class DownloadBody:
    """The Parquet bytes of one download, as an async iterator that releases its reader and run
    hold exactly once: at the end, on an error or cancellation, on `aclose()`, or -- if nobody
    ever iterates it (the client went away before the response started) -- when collected."""

    def __init__(self, chunks: Iterator[bytes], hold: int) -> None:
        self._chunks = chunks
        self._pending: asyncio.Future[object] | None = None
        self._finalizer = weakref.finalize(self, _release, chunks, hold)  # runs at most once

    @property
    def released(self) -> bool:
        return not self._finalizer.alive

    def release(self) -> None:
        """Release now (on the calling thread; closing a reader is quick)."""
        self._finalizer()

    def __aiter__(self) -> DownloadBody:
        return self

    async def __anext__(self) -> bytes:
        while self._finalizer.alive:
            self._pending = asyncio.get_running_loop().run_in_executor(None, next, self._chunks, _DONE)
            try:
                chunk = await asyncio.shield(self._pending)  # a cancelled request lets the read finish
            except BaseException:
                # Its own task: a cancelled scope (the client left) cannot interrupt the release.
                closing = asyncio.ensure_future(self.aclose())
                _CLOSING.add(closing)
                closing.add_done_callback(_CLOSING.discard)
                raise
            if chunk is _DONE:
                await self.aclose()
                break
            if chunk:
                return chunk  # type: ignore[return-value]
        raise StopAsyncIteration

    async def aclose(self) -> None:
        pending = self._pending
        if pending is not None and not pending.done():
            await asyncio.wait([pending])  # close the reader only once its last read has ended
        if pending is not None and pending.done():
            _ = pending.cancelled() or pending.exception()  # reported to the iterator, or moot now
        if self._finalizer.alive:
            await asyncio.to_thread(self._finalizer)
