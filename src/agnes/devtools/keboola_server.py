"""A faithful local Keboola Storage API server (the subset Agnes uses), backed by real files.

For tests, demos (`agnes dev keboola-server --data DIR`) and the bench. It
speaks the real paths under `/v2/storage`, checks `X-StorageApi-Token` (a
token in the URL is refused like any missing token), reads form-encoded POST
bodies, runs exports as async jobs (`waiting` -> `processing` -> `success`),
and writes gzip CSV exports - unsliced with a header, or header-less slices
with a manifest - into one storage provider: `local` (served by this server),
`aws` (S3, e.g. moto), `azure` (Blob, e.g. azurite) or `gcp` (GCS JSON API,
e.g. agnes.devtools.gcs_server). 401, 404, 429 (with Retry-After) and job
errors happen where Keboola has them; `faults` injects the rest.

Data folder: `tables/<table id>/meta.json` (columns, primaryKey,
columnMetadata, metadata, lastChangeDate ...) and `tables/<table id>/data.csv`
(header + rows, plus Keboola's hidden `_timestamp` column that `changedSince`
filters on). `KeboolaData` writes them.
"""

from __future__ import annotations

import csv
import hmac
import itertools
import json
import math
import secrets
import shutil
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import duckdb

from agnes.devtools.keboola_storage import Backend, LocalBackend, utc_iso
from agnes.devtools.local_http import LocalHttpServer

TS = "_timestamp"


def _lit(text: Any) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# --- the data folder ---------------------------------------------------------------------

class KeboolaData:
    """Tables in a data folder, as the server serves them."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        (self.root / "tables").mkdir(parents=True, exist_ok=True)

    def folder(self, table_id: str) -> Path:
        if "/" in table_id or table_id.startswith("."):
            raise ValueError(f"bad table id {table_id!r}")
        return self.root / "tables" / table_id

    def table_ids(self) -> list[str]:
        return sorted(p.name for p in (self.root / "tables").iterdir() if (p / "meta.json").is_file())

    def meta(self, table_id: str) -> dict[str, Any] | None:
        path = self.folder(table_id) / "meta.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def rows_count(self, table_id: str, meta: dict[str, Any]) -> int:
        """`rowsCount` as Keboola reports it (kept in meta.json; counted for folders written without it)."""
        if isinstance(meta.get("rowsCount"), int):
            return int(meta["rowsCount"])
        with open(self.folder(table_id) / "data.csv", newline="", encoding="utf-8") as f:
            return max(0, sum(1 for _ in csv.reader(f)) - 1)

    def write_meta(self, table_id: str, meta: dict[str, Any]) -> None:
        path = self.folder(table_id) / "meta.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(meta, indent=1))
        tmp.replace(path)

    def put_table(self, table_id: str, columns: list[str], rows: list[list[Any]], *,
                  types: dict[str, str | tuple[str, str]] | None = None, primary_key: list[str] | None = None,
                  description: str | None = None, at: datetime | None = None,
                  user_types: dict[str, str] | None = None) -> None:
        """Create/replace a table; `types` = {column: basetype or (basetype, native type/length)}."""
        folder = self.folder(table_id)
        folder.mkdir(parents=True, exist_ok=True)
        stamp = utc_iso(at)
        with open(folder / "data.csv", "w", newline="", encoding="utf-8") as f:
            out = csv.writer(f, quoting=csv.QUOTE_ALL)
            out.writerow([*columns, TS])
            for row in rows:
                out.writerow([_text(v) for v in row] + [stamp])
        self.write_meta(table_id, {**self._meta(table_id, columns, types or {}, primary_key or [], description,
                                                stamp, user_types or {}), "rowsCount": len(rows)})

    def put_csv(self, table_id: str, columns: list[str], csv_path: Path, *, types: dict[str, Any] | None = None,
                primary_key: list[str] | None = None, at: datetime | None = None) -> None:
        """Adopt a CSV file that already has the header `columns + [_timestamp]` (bench-sized tables)."""
        folder = self.folder(table_id)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.move(str(csv_path), folder / "data.csv")
        meta = self._meta(table_id, columns, types or {}, primary_key or [], None, utc_iso(at), {})
        self.write_meta(table_id, {**meta, "rowsCount": self.rows_count(table_id, {})})  # counted once, here

    def upsert_rows(self, table_id: str, rows: list[list[Any]], *, at: datetime | None = None) -> None:
        """Insert or replace rows by primary key with a new `_timestamp` (an incremental load in Keboola)."""
        meta = self.meta(table_id)
        assert meta is not None, table_id
        stamp = utc_iso(at)
        pk = [meta["columns"].index(k) for k in meta["primaryKey"]]
        path = self.folder(table_id) / "data.csv"
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader)
            existing = list(reader)
        fresh = {tuple(_text(r[i]) for i in pk): [_text(v) for v in r] + [stamp] for r in rows}
        kept = [r for r in existing if tuple(r[i] for i in pk) not in fresh]
        with open(path, "w", newline="", encoding="utf-8") as f:
            out = csv.writer(f, quoting=csv.QUOTE_ALL)
            out.writerow(header)
            out.writerows(kept + list(fresh.values()))
        meta["lastChangeDate"] = meta["lastImportDate"] = stamp
        meta["rowsCount"] = len(kept) + len(fresh)
        self.write_meta(table_id, meta)

    def _meta(self, table_id: str, columns: list[str], types: dict[str, Any], primary_key: list[str],
              description: str | None, stamp: str, user_types: dict[str, str]) -> dict[str, Any]:
        column_meta: dict[str, list[dict[str, str]]] = {}
        for c in columns:
            declared = types.get(c)
            entries = []
            if declared:
                base, extra = (declared, None) if isinstance(declared, str) else declared
                entries.append({"key": "KBC.datatype.basetype", "value": base, "provider": "storage"})
                if extra:
                    key = "KBC.datatype.length" if base == "NUMERIC" else "KBC.datatype.type"
                    entries.append({"key": key, "value": extra, "provider": "storage"})
            if c in user_types:
                entries.append({"key": "KBC.datatype.basetype", "value": user_types[c], "provider": "user"})
            column_meta[c] = entries
        metadata = [{"key": "KBC.description", "value": description, "provider": "user"}] if description else []
        return {"id": table_id, "name": table_id.rsplit(".", 1)[-1], "columns": columns, "primaryKey": primary_key,
                "columnMetadata": column_meta, "metadata": metadata, "created": stamp, "lastImportDate": stamp,
                "lastChangeDate": stamp, "isAlias": False}


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --- the server ----------------------------------------------------------------------------

@dataclass
class Faults:
    """Failure injection for tests: per table id."""

    rate_limit: dict[str, int] = field(default_factory=dict)  # table id -> 429s still to answer on export
    retry_after: str = "0"
    job_error: dict[str, str] = field(default_factory=dict)  # table id -> the job's error.message
    requests: list[tuple[str, str, dict[str, list[str]]]] = field(default_factory=list)  # (method, path, form)
    fail_paths: dict[str, int] = field(default_factory=dict)  # exact path -> status to answer (e.g. 501)
    forbidden: set[str] = field(default_factory=set)  # table ids the token may not read (403, like Keboola)
    stuck: set[str] = field(default_factory=set)  # table ids whose export job stays `processing`


class KeboolaServer(LocalHttpServer):
    """`KeboolaServer(data_dir, tokens=[...]).start()` -> `.url` (the stack URL); `.stop()` when done."""

    thread_name = "keboola-server"

    def __init__(self, data_dir: Path, *, tokens: list[str] | None = None, host: str = "127.0.0.1", port: int = 0,
                 sliced: bool = True, slice_rows: int = 250_000, backend: Backend | None = None) -> None:
        self.data = KeboolaData(data_dir)
        self.tokens = set(tokens or ["test-token"])
        self.sliced, self.slice_rows = sliced, slice_rows
        self.faults = Faults()
        self._ids = itertools.count(1000)
        self._jobs: dict[int, dict[str, Any]] = {}
        self._files: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._bind(host, port, _handler(self))
        self.backend = backend or LocalBackend(self.data.root / "files", self.url, secrets.token_bytes(16))

    def serve_forever(self) -> None:
        try:
            self._httpd.serve_forever()
        finally:
            self._httpd.server_close()

    # -- resources --------------------------------------------------------------------------
    def table_json(self, table_id: str, include: set[str]) -> dict[str, Any] | None:
        meta = self.data.meta(table_id)
        if meta is None:
            return None
        bucket_id = table_id.rsplit(".", 1)[0]
        out = {k: meta[k] for k in ("id", "name", "primaryKey", "created", "lastImportDate", "lastChangeDate",
                                    "isAlias")}
        out.update(uri=f"{self.url}/v2/storage/tables/{table_id}", displayName=meta["name"],
                   rowsCount=self.data.rows_count(table_id, meta),
                   dataSizeBytes=(self.data.folder(table_id) / "data.csv").stat().st_size,
                   bucket=self.bucket_json(bucket_id) if "buckets" in include or not include else None)
        if "columns" in include:
            out["columns"] = meta["columns"]
        if "columnMetadata" in include:
            out["columnMetadata"] = meta["columnMetadata"]
        if "metadata" in include:
            out["metadata"] = meta["metadata"]
        if out["bucket"] is None:
            out.pop("bucket")
        return out

    def bucket_json(self, bucket_id: str) -> dict[str, Any]:
        stage, _, name = bucket_id.partition(".")
        return {"id": bucket_id, "name": name, "stage": stage, "displayName": name.removeprefix("c-"),
                "uri": f"{self.url}/v2/storage/buckets/{bucket_id}"}

    def bucket_ids(self) -> list[str]:
        return sorted({t.rsplit(".", 1)[0] for t in self.data.table_ids()})

    def start_export(self, table_id: str, form: dict[str, str]) -> dict[str, Any]:
        job_id = next(self._ids)
        job = {"id": job_id, "status": "waiting", "operationName": "tableExport", "tableId": table_id,
               "url": f"{self.url}/v2/storage/jobs/{job_id}", "createdTime": utc_iso(), "results": None,
               "error": None, "polls": 0, "done": threading.Event()}
        with self._lock:
            self._jobs[job_id] = job

        def work() -> None:
            if table_id in self.faults.stuck:
                return  # `done` never set: the job stays `processing`
            try:
                if table_id in self.faults.job_error:
                    raise RuntimeError(self.faults.job_error[table_id])
                file_id = self._export(table_id, form.get("changedSince"))
                job["results"] = {"file": {"id": file_id}}
            except Exception as e:
                job["error"] = {"message": str(e), "code": "storage.tableExport.error"}
            finally:
                job["done"].set()

        threading.Thread(target=work, daemon=True).start()
        return self.job_json(job)

    def poll(self, job_id: int) -> dict[str, Any] | None:
        job = self._jobs.get(job_id)
        if job is None:
            return None
        job["polls"] += 1
        if job["polls"] == 1 and job["status"] == "waiting":
            job["status"] = "processing"
        elif job["done"].is_set() and job["polls"] >= 2:
            job["status"] = "error" if job["error"] else "success"
        return self.job_json(job)

    @staticmethod
    def job_json(job: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in job.items() if k not in ("done", "polls")}

    def _export(self, table_id: str, changed_since: str | None) -> int:
        meta = self.data.meta(table_id)
        if meta is None:
            raise RuntimeError(f"The table {table_id} was not found")
        file_id = next(self._ids)
        key = f"exp-{file_id}/{table_id}.csv.gz" if not self.sliced else f"exp-{file_id}/{table_id}.csv.gz."
        work = self.data.root / "work" / str(file_id)
        work.mkdir(parents=True)
        try:
            cols = ", ".join(_q(c) for c in meta["columns"])
            where = ""
            if changed_since:
                since = _parse_since(changed_since)
                where = f" WHERE strptime({_q(TS)}, '%Y-%m-%dT%H:%M:%S%z') >= {_lit(since.isoformat())}::TIMESTAMPTZ"
            con = duckdb.connect()
            try:
                con.execute("SET TimeZone = 'UTC'")
                src = (f"read_csv({_lit(self.data.folder(table_id) / 'data.csv')}, header = true, all_varchar = true,"
                       " quote = '\"', escape = '\"', auto_detect = false, columns = {"
                       + ", ".join(f"{_lit(c)}: 'VARCHAR'" for c in [*meta["columns"], TS]) + "})")
                con.execute(f"CREATE TABLE t AS SELECT {cols} FROM {src}{where}")
                rows = con.execute("SELECT count(*) FROM t").fetchone()[0]
                if not self.sliced:
                    part = work / "whole.csv.gz"
                    con.execute(f"COPY t TO {_lit(part)} (HEADER true, COMPRESSION gzip, FORCE_QUOTE *)")
                    self.backend.put(key, part)
                    sliced_refs = None
                else:
                    n = max(1, math.ceil(rows / self.slice_rows))
                    sliced_refs = []
                    for i in range(n):
                        part = work / f"part{i:04d}.gz"
                        con.execute(f"COPY (SELECT * FROM t WHERE rowid >= {i * self.slice_rows} AND rowid < "
                                    f"{(i + 1) * self.slice_rows}) TO {_lit(part)} "
                                    "(HEADER false, COMPRESSION gzip, FORCE_QUOTE *)")
                        slice_key = f"{key}part{i:04d}.gz"
                        self.backend.put(slice_key, part)
                        sliced_refs.append({"url": self.backend.ref(slice_key)})
            finally:
                con.close()
            if sliced_refs is not None:
                manifest = work / "manifest"
                manifest.write_text(json.dumps({"entries": sliced_refs}))
                self.backend.put(key + "manifest", manifest)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        info = {"id": file_id, "name": f"{table_id}.csv.gz", "isSliced": self.sliced, "isEncrypted": True,
                "provider": self.backend.provider, "created": utc_iso(), "sizeBytes": None, "rowsCount": rows,
                "federationKey": key}
        with self._lock:
            self._files[file_id] = info
        return file_id

    def file_json(self, file_id: int, federation: bool) -> dict[str, Any] | None:
        info = self._files.get(file_id)
        if info is None:
            return None
        out = {k: v for k, v in info.items() if k != "federationKey"}
        fields = self.backend.file_fields(info["federationKey"], info["isSliced"])
        if not federation:  # without federationToken=1 only the url, no credentials
            fields = {"url": fields.get("url")}
        out.update(fields)
        return out


def _parse_since(value: str) -> datetime:
    text = value.strip()
    if text.lstrip("-").isdigit():
        return datetime.fromtimestamp(int(text), UTC)
    text = text.replace("Z", "+00:00").replace(" ", "T", 1)
    parsed = datetime.fromisoformat(text)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def _handler(server: KeboolaServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            return

        def _json(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _error(self, code: int, message: str, kbc_code: str, headers: dict[str, str] | None = None) -> None:
            self._json(code, {"error": message, "code": kbc_code, "status": "error"}, headers)

        def _route(self, method: str) -> None:
            parsed = urlparse(self.path)
            query = parse_qs(parsed.query)
            form: dict[str, list[str]] = {}
            if method == "POST":
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                if raw and "application/x-www-form-urlencoded" not in (self.headers.get("Content-Type") or ""):
                    self._error(400, "POST bodies must be form-encoded", "storage.validation")
                    return
                form = parse_qs(raw)
            server.faults.requests.append((method, parsed.path, form))
            if parsed.path.startswith("/_files/") and method == "GET":
                self._file(unquote(parsed.path[len("/_files/"):]), query)
                return
            token = self.headers.get("X-StorageApi-Token")
            if token not in server.tokens:
                self._error(401, "Invalid access token", "storage.tokenInvalid")
                return
            if parsed.path in server.faults.fail_paths:
                self._error(server.faults.fail_paths[parsed.path], "Injected failure", "injected")
                return
            parts = [unquote(p) for p in parsed.path.split("/") if p]
            if parts[:2] != ["v2", "storage"]:
                self._error(404, f"Route {parsed.path} not found", "notFound")
                return
            self._api(method, parts[2:], query, {k: v[0] for k, v in form.items()})

        def _api(self, method: str, parts: list[str], query: dict[str, list[str]], form: dict[str, str]) -> None:
            include = set(",".join(query.get("include", [])).split(",")) - {""}
            if method == "GET" and parts == ["buckets"]:
                self._json(200, [server.bucket_json(b) for b in server.bucket_ids()])
            elif method == "GET" and parts == ["tables"]:
                self._json(200, [server.table_json(t, include) for t in server.data.table_ids()])
            elif method == "GET" and len(parts) == 3 and parts[0] == "buckets" and parts[2] == "tables":
                if parts[1] not in server.bucket_ids():
                    self._error(404, f"Bucket {parts[1]} not found", "storage.buckets.notFound")
                    return
                self._json(200, [server.table_json(t, include) for t in server.data.table_ids()
                                 if t.rsplit(".", 1)[0] == parts[1]])
            elif len(parts) in (2, 3) and parts[0] == "tables" and parts[1] in server.faults.forbidden:
                self._error(403, f"You don't have access to the resource (table {parts[1]}).", "accessDenied")
            elif method == "GET" and len(parts) == 2 and parts[0] == "tables":
                found = server.table_json(parts[1], {"columns", "columnMetadata", "metadata", "buckets"})
                if found is None:
                    self._error(404, f"The table \"{parts[1]}\" was not found in the bucket", "storage.tables.notFound")
                    return
                self._json(200, found)
            elif method == "POST" and len(parts) == 3 and parts[0] == "tables" and parts[2] == "export-async":
                table_id = parts[1]
                left = server.faults.rate_limit.get(table_id, 0)
                if left > 0:
                    server.faults.rate_limit[table_id] = left - 1
                    self._error(429, "Too many requests, slow down", "tooManyRequests",
                                {"Retry-After": server.faults.retry_after})
                    return
                if server.data.meta(table_id) is None:
                    self._error(404, f"The table \"{table_id}\" was not found in the bucket",
                                "storage.tables.notFound")
                    return
                self._json(202, server.start_export(table_id, form))
            elif method == "GET" and len(parts) == 2 and parts[0] == "jobs" and parts[1].isdigit():
                job = server.poll(int(parts[1]))
                if job is None:
                    self._error(404, f"Job {parts[1]} not found", "storage.jobs.notFound")
                    return
                self._json(200, job)
            elif method == "GET" and len(parts) == 2 and parts[0] == "files" and parts[1].isdigit():
                info = server.file_json(int(parts[1]), query.get("federationToken", ["0"])[0] == "1")
                if info is None:
                    self._error(404, f"File {parts[1]} not found", "storage.files.notFound")
                    return
                self._json(200, info)
            else:
                self._error(404, f"Route {method} /v2/storage/{'/'.join(parts)} not found", "notFound")

        def _file(self, key: str, query: dict[str, list[str]]) -> None:
            backend = server.backend
            if not isinstance(backend, LocalBackend) or not hmac.compare_digest(
                    query.get("sig", [""])[0], backend.sign(key)):
                self._error(403, "Invalid signature", "storage.files.forbidden")
                return
            path = (backend.root / key).resolve()
            if backend.root.resolve() not in path.parents or not path.is_file():
                self._error(404, "File not found", "storage.files.notFound")
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(path.stat().st_size))
            self.end_headers()
            with open(path, "rb") as f:
                shutil.copyfileobj(f, self.wfile, 1 << 20)

        def do_GET(self) -> None:  # noqa: N802
            self._route("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._route("POST")

    return Handler


def demo_data(root: Path) -> KeboolaData:
    """A small project for demos: orders (typed, with a primary key) and customers."""
    data = KeboolaData(root)
    if not data.table_ids():
        data.put_table("in.c-crm.orders", ["id", "customer_id", "amount", "paid", "ordered_on", "created_at", "note"],
                       [[1, 10, "12.50", "true", "2024-01-02", "2024-01-02 10:00:00", "first"],
                        [2, 11, "7.25", "false", "2024-01-03", "2024-01-03 11:30:00", ""],
                        [3, 10, "100.00", "true", "2024-02-01", "2024-02-01 09:15:00", "big one"]],
                       types={"id": "INTEGER", "customer_id": "INTEGER", "amount": ("NUMERIC", "12,2"),
                              "paid": "BOOLEAN", "ordered_on": "DATE", "created_at": "TIMESTAMP", "note": "STRING"},
                       primary_key=["id"], description="Orders from the CRM")
        data.put_table("in.c-crm.customers", ["id", "name", "score"],
                       [[10, "Acme", "0.5"], [11, "Globex", "1.25"]],
                       types={"id": "INTEGER", "name": "STRING", "score": "FLOAT"}, primary_key=["id"])
    return data
