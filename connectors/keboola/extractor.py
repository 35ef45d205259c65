"""Keboola connector: export tables through the Storage API into typed parquet.

For each wanted table (AGNES_TABLES holds Keboola table ids; empty = every
table): read its detail (columns, column metadata, primary key), start an
async export, download the file from the stack's cloud storage with the
federation credentials, type the columns from KBC.datatype metadata and write
`data/<normalised id>.parquet`. A table with a primary key and previous data
is exported incrementally (`changedSince` = the previous cursor minus a
safety window) and merged by primary key. Up to `export_workers` tables
(default 4) export at once on threads; events, logs and ExtractWriter calls
are serialised by one lock. One failing table emits `table_failed` with
Keboola's message and the others go on; the process exits 1 only when every
table failed.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agnes.extract import ExtractWriter, normalize_table_name, read_context
from agnes.extract import emit as _emit
from agnes.extract import log as _log
from agnes.extract.keboola.api import KeboolaError, StorageApi
from agnes.extract.keboola.coltypes import description, table_types
from agnes.extract.keboola.load import SchemaChanged, load, previous_state
from agnes.extract.keboola.storage import download, remove

TOKEN_ENV = "KEBOOLA_STORAGE_TOKEN"  # noqa: S105 - the variable's name
URL_ENV = "KEBOOLA_STACK_URL"
ENDPOINT_ENVS = {"s3": "AGNES_KEBOOLA_S3_ENDPOINT_URL", "gcs": "AGNES_KEBOOLA_GCS_ENDPOINT_URL"}
DEFAULT_SAFETY_SECONDS = 600
DEFAULT_EXPORT_WORKERS = 4
_OUT = threading.Lock()  # one table's events/log lines and ExtractWriter calls at a time


def emit(event: str, **fields: Any) -> None:
    with _OUT:
        _emit(event, **fields)


def log(message: str) -> None:
    with _OUT:
        _log(message)


def parse_time(value: str) -> datetime:
    """Keboola's `2024-05-01T10:00:00+0200` (or ISO with Z / +02:00) as an aware UTC datetime."""
    text = value.strip().replace("Z", "+00:00")
    if len(text) > 5 and text[-5] in "+-" and text[-3] != ":":
        text = text[:-2] + ":" + text[-2:]
    parsed = datetime.fromisoformat(text)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def load_memory_share(parallel: int) -> str | None:
    """Half of this machine's (or container's) memory, split between the loads that run at once."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
    try:  # a container's own limit (cgroup v2) when it is lower than the host's memory
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        total = min(total, int(limit)) if limit.isdigit() else total
    except OSError:
        pass
    return f"{max(256, total // 2 // parallel // 2**20)}MB"


class Extractor:
    def __init__(self, api: StorageApi, config: dict[str, Any], previous_dir: Path | None, work: Path) -> None:
        self.api, self.config, self.previous_dir, self.work = api, config, previous_dir, work
        endpoints = dict(config.get("storage_endpoints") or {})
        for key, env in ENDPOINT_ENVS.items():  # running by hand: the same override from the environment
            if not endpoints.get(key) and os.environ.get(env):
                endpoints[key] = os.environ[env]
        self.endpoints = {k: str(v) for k, v in endpoints.items() if v}
        self.safety = timedelta(seconds=int(config.get("changed_since_safety_seconds", DEFAULT_SAFETY_SECONDS)))
        self.incremental = config.get("incremental", True) is not False
        self.export_timeout = float(config.get("export_timeout_seconds", 3600))
        self.timings: dict[str, dict[str, Any]] = {}
        self.memory_limit: str | None = None  # set by main() once the number of parallel loads is known
        reload_before = config.get("full_reload_before")
        self.full_reload_before = parse_time(str(reload_before)) if reload_before else None

    def previous(self, name: str) -> Path | None:
        if self.previous_dir is None:
            return None
        path = self.previous_dir / "data" / f"{name}.parquet"
        return path if path.is_file() else None

    def extract(self, w: ExtractWriter, table_id: str, name: str) -> None:
        detail = self.api.table(table_id)
        types = table_types(detail)
        if not types:
            raise KeboolaError("bad_response", f"table {table_id}: Keboola lists no columns for it")
        primary_key = [str(c) for c in detail.get("primaryKey") or []]
        cursor = _iso(parse_time(detail["lastChangeDate"])) if detail.get("lastChangeDate") else _iso(
            datetime.now(UTC))
        previous = self.previous(name)
        since = None
        started = datetime.now(UTC)
        full_loaded_at = started.isoformat()
        if self.incremental and primary_key and previous is not None:
            state = previous_state(previous)
            last_full = state.get("full_loaded_at")
            due = self.full_reload_before is not None and (last_full is None or
                                                           parse_time(last_full) < self.full_reload_before)
            if state.get("cursor") and state.get("table_id") == table_id and not due:
                since = _iso(parse_time(state["cursor"]) - self.safety)
                full_loaded_at = last_full or full_loaded_at
        try:
            loaded = self._export(table_id, name, types, cursor, full_loaded_at, primary_key,
                                  previous if since else None, since)
        except SchemaChanged as e:
            log(f"table {table_id}: {e}; reloading it fully")
            full_loaded_at = started.isoformat()
            loaded = self._export(table_id, name, types, cursor, full_loaded_at, primary_key, None, None)
            since = None
        for p in loaded.problems:
            emit("table_warning", table=name, native_id=table_id, column=p.column, declared=p.declared,
                 bad_values=p.bad_values, example=p.example, kept_as="VARCHAR",
                 message=f"table {table_id}: column {p.column!r}: {p.bad_values} value(s) do not parse as "
                         f"{p.declared} (e.g. {p.example!r}), or only with a change (rounded, an offset or a time "
                         "of day dropped); the column is kept as VARCHAR so nothing is lost - fix the column's data "
                         "type in Keboola")
        with _OUT:  # ExtractWriter (its DuckDB file) is not thread-safe
            info = w.add_parquet_files(name, [loaded.path], partitioned=False, move=True,
                                       description=description(detail), extracted_at=started)
        emit("table_done", table=name, native_id=table_id, rows=info.rows, bytes=info.size_bytes,
             mode="incremental" if since else "full", changed_since=since,
             kept_from_previous=loaded.merged_from_previous, **self.timings.get(name, {}))

    def _export(self, table_id: str, name: str, types: list[tuple[str, str]], cursor: str, full_loaded_at: str,
                primary_key: list[str], previous: Path | None, since: str | None) -> Any:
        folder = self.work / name
        remove(folder)
        folder.mkdir(parents=True)
        try:
            t0 = time.monotonic()
            file_info = self.api.export(table_id, changed_since=since, timeout=self.export_timeout)
            t1 = time.monotonic()
            got = download(file_info, folder / "download", endpoints=self.endpoints,
                           workers=int(self.config.get("download_workers", 8)))
            t2 = time.monotonic()
            (folder / "tmp").mkdir()
            loaded = load(table_id, got.files, header=got.header, types=types, work=folder,
                          out=self.work / "out" / f"{name}.parquet", cursor=cursor, full_loaded_at=full_loaded_at,
                          primary_key=primary_key, previous=previous, memory_limit=self.memory_limit)
            self.timings[name] = {"export_s": round(t1 - t0, 3), "download_s": round(t2 - t1, 3),
                                  "load_s": round(time.monotonic() - t2, 3), "files": len(got.files),
                                  "downloaded_bytes": sum(f.stat().st_size for f in got.files)}
            return loaded
        finally:
            remove(folder / "download")


def plan(wanted: list[str], api: StorageApi) -> tuple[dict[str, str], list[dict[str, str]]]:
    """{normalised name: Keboola id}; ids that cannot be named or collide are failures, never merged."""
    ids = wanted or sorted(str(t["id"]) for t in api.tables())
    by_name: dict[str, list[str]] = {}
    failed = []
    for table_id in ids:
        try:
            by_name.setdefault(normalize_table_name(table_id), []).append(table_id)
        except ValueError as e:
            failed.append({"table": "", "native_id": table_id, "error": f"table {table_id}: {e}"})
    tables = {}
    for name, group in by_name.items():
        if len(group) > 1:
            for table_id in group:
                failed.append({"table": name, "native_id": table_id, "error": f"Keboola tables {', '.join(group)} "
                               f"all normalise to {name!r}; they are never merged - extract one of them"})
        else:
            tables[name] = group[0]
    return tables, failed


def main() -> int:
    ctx = read_context()
    url = ctx.config.get("keboola_url") or os.environ.get(URL_ENV)
    if not url:
        log(f"keboola connector: option keboola_url is not set; configure the source with keboola_url (the stack "
            f"URL, e.g. https://connection.keboola.com) or, running by hand, export {URL_ENV}=...")
        return 2
    token = ctx.secret(TOKEN_ENV)
    previous = ctx.previous_dir
    with StorageApi(str(url), token) as api, tempfile.TemporaryDirectory(prefix="agnes-keboola-") as tmp:
        try:
            tables, failed = plan(ctx.tables, api)
        except KeboolaError as e:
            log(f"keboola connector: cannot list the tables: {e.message}")
            return 1
        for f in failed:
            if f["table"]:
                emit("table_failed", **f)
            else:
                log(f["error"])
        extractor = Extractor(api, ctx.config, previous, Path(tmp))
        workers = max(1, int(ctx.config.get("export_workers") or DEFAULT_EXPORT_WORKERS))
        extractor.memory_limit = load_memory_share(min(workers, max(1, len(tables))))
        with ExtractWriter(ctx.output_dir) as w:

            def one(item: tuple[str, str]) -> bool:
                name, table_id = item
                emit("table_started", table=name, native_id=table_id)
                began = time.monotonic()
                try:
                    extractor.extract(w, table_id, name)
                    log(f"table {table_id} -> {name}: done in {time.monotonic() - began:.1f}s")
                    return True
                except KeboolaError as e:
                    emit("table_failed", table=name, native_id=table_id, error=e.message)
                    log(f"table {table_id}: {e.message}")
                except Exception as e:  # one table's surprise must not lose the others
                    message = f"table {table_id}: {type(e).__name__}: {e}"
                    emit("table_failed", table=name, native_id=table_id, error=message)
                    log(message)
                return False

            with ThreadPoolExecutor(max_workers=min(workers, max(1, len(tables))),
                                    thread_name_prefix="export") as pool:
                done = sum(pool.map(one, sorted(tables.items())))
    return 0 if done or not (tables or failed) else 1


if __name__ == "__main__":
    sys.exit(main())
