"""`agnes pull`: bring the local copy in line with the server's manifest.

Only tables whose content hash changed are downloaded (If-None-Match turns a
race into a cheap 304); tables that disappeared from the manifest -- a revoked
grant, a deleted table -- are removed locally. A table the manifest lists as
`unavailable` (its data cannot be read on the server right now) is kept as it
is: only a table really gone from the manifest is deleted. The DuckDB file is
rebuilt last. Progress is saved after every table, so an interrupted pull resumes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from agnes.client.api import AgnesApi, ClientError
from agnes.client.local import LocalFolder, LocalState, as_local


class Progress(Protocol):
    def start(self, table_id: str, total: int | None) -> None: ...
    def advance(self, table_id: str, size: int) -> None: ...
    def finish(self, table_id: str) -> None: ...


class NoProgress:
    def start(self, table_id: str, total: int | None) -> None:
        pass

    def advance(self, table_id: str, size: int) -> None:
        pass

    def finish(self, table_id: str) -> None:
        pass


@dataclass
class PullReport:
    downloaded: list[str] = field(default_factory=list)
    current: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    unavailable: list[str] = field(default_factory=list)  # listed, but not readable on the server now


def _etag(value: str | None) -> str | None:
    return value.removeprefix("W/").strip('"') if value else None


def pull(api: AgnesApi, folder: LocalFolder, tables: list[str] | None = None,
         progress: Progress | None = None) -> PullReport:
    progress = progress or NoProgress()
    remote = {item["id"]: item for item in api.manifest()["items"]}
    unknown = [t for t in tables or [] if t not in remote]
    if unknown:
        raise ClientError("table_not_found", f"Not downloadable for you: {', '.join(unknown)}.",
                          "`agnes catalog` lists what you may read; remote tables are not downloadable, query them "
                          "with `agnes query --remote`.")
    state = folder.load()
    if state.url and state.url != api.url:
        raise ClientError("other_instance", f"{folder.root} holds data from {state.url}, not {api.url}.",
                          "Use another folder (--dir) for each Agnes instance.")
    state.url = api.url
    report = PullReport()
    for table_id in sorted(set(state.tables) - set(remote)):  # revoked or deleted: not yours any more
        folder.remove(table_id)
        del state.tables[table_id]
        report.removed.append(table_id)
    folder.save(state)
    for table_id in tables or sorted(remote):
        entry = remote[table_id]
        if entry.get("status", "ok") != "ok" or not entry.get("hash"):
            report.unavailable.append(table_id)  # keep the local copy (if any) as it is
            if tables:
                report.failed[table_id] = ("its data cannot be read on the server right now; retry later "
                                           "(`agnes pull` again)")
            continue
        _pull_one(api, folder, state, table_id, entry, progress, report)
        folder.save(state)
    folder.build_database(state)
    return report


def _pull_one(api: AgnesApi, folder: LocalFolder, state: LocalState, table_id: str, entry: dict,  # type: ignore[type-arg]
              progress: Progress, report: PullReport) -> None:
    local = state.tables.get(table_id)
    file = folder.file_for(table_id)
    have = local.hash if local is not None and file.is_file() else None
    relative = str(file.relative_to(folder.root))
    if have == entry["hash"]:
        state.tables[table_id] = as_local(entry, relative)
        report.current.append(table_id)
        return
    try:
        with api.download(table_id, etag=have) as resp:
            if resp.status_code == 304:
                report.current.append(table_id)
                return
            length = resp.headers.get("content-length")
            progress.start(table_id, int(length) if length else entry.get("size_bytes"))
            try:
                folder.write_atomically(table_id, resp.iter_bytes(), lambda n: progress.advance(table_id, n))
            finally:
                progress.finish(table_id)
            got = _etag(resp.headers.get("etag")) or entry["hash"]
    except (ClientError, ValueError, OSError) as exc:
        report.failed[table_id] = getattr(exc, "message", None) or str(exc)
        return
    state.tables[table_id] = as_local({**entry, "hash": got}, relative)
    report.downloaded.append(table_id)
