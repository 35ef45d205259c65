"""A small client for the Keboola Storage API (the subset Agnes uses).

Why our own: the DuckDB community extension cannot see linked buckets and is
not installable offline. Every call sends `X-StorageApi-Token` (never the
token in a URL), POST bodies are form-encoded, 429 honours `Retry-After`
(bounded) and transient failures are retried with backoff - a GET on 5xx or a
network error, a POST only on 429 or when it never connected (Keboola did not
take it), so a retry never starts a second export job; anything else becomes a
`KeboolaError` carrying Keboola's own message.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import httpx

TOKEN_HEADER = "X-StorageApi-Token"  # noqa: S105 - a header name
MAX_RETRY_AFTER = 60.0  # seconds we ever wait on one 429
USER_AGENT = "agnes-keboola-connector"


class KeboolaError(Exception):
    """A Storage API failure; `kind` is auth | not_found | rate_limited | job | network | http | bad_response."""

    def __init__(self, kind: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind, self.message, self.status = kind, message, status


def storage_base(stack_url: str) -> str:
    """`https://connection.keboola.com` -> `https://connection.keboola.com/v2/storage` (idempotent)."""
    url = stack_url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise KeboolaError("bad_response", f"keboola_url {stack_url!r} must start with https:// (e.g. "
                           "https://connection.keboola.com, the stack URL)")
    if plain_http_to_remote(url):
        raise KeboolaError("bad_response", f"keboola_url {stack_url!r} is plain http:// to a host that is not this "
                           "machine: the Storage API token would travel unencrypted; use https://")
    if url.endswith("/v2/storage"):
        return url
    return url + "/v2/storage"


def plain_http_to_remote(url: str) -> bool:
    """True for http:// to anything but loopback (the local test server may use http; Keboola never does)."""
    parsed = urlparse(url.strip())
    if parsed.scheme != "http":
        return False
    host = (parsed.hostname or "").lower()
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def _message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip()[:300] or resp.reason_phrase
    if isinstance(body, dict):
        for key in ("error", "message"):
            if isinstance(body.get(key), str):
                return body[key]
    return str(body)[:300]


class StorageApi:
    """Synchronous client; one per process (the connector is a short-lived subprocess)."""

    def __init__(self, stack_url: str, token: str, *, timeout: float = 60.0, retries: int = 4,
                 sleep: Callable[[float], None] = time.sleep, max_retry_after: float = MAX_RETRY_AFTER) -> None:
        self.base = storage_base(stack_url)
        self.retries, self.sleep, self.max_retry_after = retries, sleep, max_retry_after
        self.http = httpx.Client(timeout=timeout, headers={TOKEN_HEADER: token, "User-Agent": USER_AGENT},
                                 follow_redirects=False)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> StorageApi:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def request(self, method: str, path: str, *, what: str, params: dict[str, Any] | None = None,
                form: dict[str, Any] | None = None) -> Any:
        """One call with retries; `what` names the object in error messages (e.g. "table in.c-crm.orders")."""
        url = self.base + path
        delay = 0.5
        idempotent = method == "GET"  # a POST retried after a 5xx or a lost answer may start a second export
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                resp = self.http.request(method, url, params=params, data=form)
            except httpx.TransportError as e:
                # a POST is retried only when it never reached Keboola (no connection)
                if last or not (idempotent or isinstance(e, (httpx.ConnectError, httpx.ConnectTimeout))):
                    raise KeboolaError("network", f"{what}: cannot reach the Keboola Storage API at {self.base}: "
                                       f"{type(e).__name__}: {e}") from None
                self.sleep(delay)
                delay = min(delay * 2, 10)
                continue
            if resp.status_code == 429:
                wait = _retry_after(resp.headers.get("Retry-After"), delay)
                if last or wait > self.max_retry_after:
                    raise KeboolaError("rate_limited", f"{what}: Keboola rate limit (429) still in force after "
                                       f"{attempt + 1} attempt(s) (Retry-After {resp.headers.get('Retry-After')!r}): "
                                       f"{_message(resp)}", 429)
                self.sleep(wait)
                delay = min(delay * 2, 10)
                continue
            if resp.status_code >= 500 and idempotent and not last:
                self.sleep(delay)
                delay = min(delay * 2, 10)
                continue
            if resp.status_code in (401, 403):
                raise KeboolaError("auth", f"{what}: Keboola refused the Storage API token ({resp.status_code}): "
                                   f"{_message(resp)}", resp.status_code)
            if resp.status_code == 404:
                raise KeboolaError("not_found", f"{what}: not found in Keboola (404): {_message(resp)}", 404)
            if resp.status_code >= 400:
                raise KeboolaError("http", f"{what}: Keboola answered {resp.status_code}: {_message(resp)}",
                                   resp.status_code)
            try:
                return resp.json()
            except ValueError:
                raise KeboolaError("bad_response", f"{what}: Keboola answered {resp.status_code} with a body that "
                                   "is not JSON") from None
        raise AssertionError("unreachable")  # pragma: no cover

    # --- the surface Agnes uses -------------------------------------------------------

    def buckets(self) -> list[dict[str, Any]]:
        return _list(self.request("GET", "/buckets", what="bucket list"), "bucket list")

    def tables(self) -> list[dict[str, Any]]:
        """Every table with columns, bucket and column metadata (one call; per bucket if that fails)."""
        try:
            return _list(self.request("GET", "/tables", params={"include": "columns,buckets,columnMetadata,metadata"},
                                      what="table list"), "table list")
        except KeboolaError as e:
            if e.kind in ("auth", "network", "rate_limited"):
                raise
        found: list[dict[str, Any]] = []
        for bucket in self.buckets():
            bid = str(bucket["id"])
            tables = _list(self.request("GET", f"/buckets/{bid}/tables",
                                        params={"include": "columns,columnMetadata,metadata"},
                                        what=f"tables of bucket {bid}"), f"tables of bucket {bid}")
            found += [{**t, "bucket": t.get("bucket") or bucket} for t in tables]
        return found

    def table(self, table_id: str) -> dict[str, Any]:
        detail = self.request("GET", f"/tables/{table_id}", what=f"table {table_id}")
        if not isinstance(detail, dict):
            raise KeboolaError("bad_response", f"table {table_id}: the table detail is not an object")
        return detail

    def export(self, table_id: str, *, changed_since: str | None = None, timeout: float = 3600.0,
               poll_max: float = 5.0) -> dict[str, Any]:
        """Start an async export, wait for it (backoff, overall timeout), return the file info."""
        form: dict[str, Any] = {"gzip": "1"}
        if changed_since:
            form["changedSince"] = changed_since
        job = self.request("POST", f"/tables/{table_id}/export-async", form=form, what=f"table {table_id}")
        deadline = time.monotonic() + timeout
        wait = 0.1
        while True:
            status = job.get("status") if isinstance(job, dict) else None
            if status == "success":
                break
            if status == "error":
                error = (job.get("error") or {}) if isinstance(job.get("error"), dict) else {}
                raise KeboolaError("job", f"table {table_id}: Keboola export job {job.get('id')} failed: "
                                   f"{error.get('message') or job.get('error') or 'no message'}")
            if status not in ("waiting", "processing", "created"):
                raise KeboolaError("bad_response", f"table {table_id}: export job has unknown status {status!r}")
            if time.monotonic() > deadline:
                raise KeboolaError("job", f"table {table_id}: Keboola export job {job.get('id')} did not finish "
                                   f"within {timeout:g}s (last status {status})")
            self.sleep(wait)
            wait = min(wait * 1.5, poll_max)
            job = self.request("GET", f"/jobs/{job['id']}", what=f"export job {job.get('id')} of {table_id}")
        try:
            file_id = job["results"]["file"]["id"]
        except (KeyError, TypeError):
            raise KeboolaError("bad_response", f"table {table_id}: export job {job.get('id')} succeeded without "
                               "results.file.id") from None
        return self.file(file_id, what=f"table {table_id}")

    def file(self, file_id: Any, *, what: str) -> dict[str, Any]:
        info = self.request("GET", f"/files/{file_id}", params={"federationToken": "1"},
                            what=f"{what}: export file {file_id}")
        if not isinstance(info, dict) or "isSliced" not in info:
            raise KeboolaError("bad_response", f"{what}: file {file_id} info lacks isSliced/url")
        return info


def _list(value: Any, what: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise KeboolaError("bad_response", f"{what}: expected a JSON array, got {type(value).__name__}")
    return [v for v in value if isinstance(v, dict)]


def _retry_after(header: str | None, default: float) -> float:
    try:
        return max(0.0, float(header)) if header is not None else default
    except ValueError:
        return default
