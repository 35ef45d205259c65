"""Post-deploy smoke test: does a running instance really serve data and sync?

The spec's sequence, made strict: wait for the sync job's real outcome (not a
fixed sleep) and read data back (a table's row count through /api/query must
equal the catalog's `rows`). Stops at the first failing step; every step is in
the JSON report with its status, duration and detail.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

import httpx
import msgspec

FINAL = ("succeeded", "partial", "failed", "cancelled")
StepStatus = Literal["passed", "failed", "skipped"]
STEPS = ("health", "token", "catalog", "query", "read_back", "sync_trigger", "sync_wait", "health_after")


class Step(msgspec.Struct):
    step: str
    status: StepStatus
    seconds: float
    detail: str


class Report(msgspec.Struct):
    url: str
    ok: bool
    failed_step: str | None
    seconds: float
    steps: list[Step]

    def summary(self) -> str:
        """One line: what passed, or which step failed and why."""
        if self.ok:
            return f"smoke passed: {len(self.steps)} steps against {self.url} in {self.seconds:.1f}s"
        failed = next(s for s in self.steps if s.status == "failed")
        return f"smoke FAILED at step {failed.step}: {failed.detail}"


class StepFailed(Exception):
    pass


def _error_text(resp: httpx.Response) -> str:
    try:
        err = resp.json().get("error") or {}
    except ValueError:
        return f"HTTP {resp.status_code}: {resp.text[:200]}"
    return f"HTTP {resp.status_code} {err.get('code', '')}: {err.get('message', resp.text[:200])}".strip()


class Smoke:
    def __init__(self, url: str, *, email: str | None = None, password: str | None = None,
                 token: str | None = None, sync_timeout: float = 300, request_timeout: float = 30,
                 poll_seconds: float = 1.0, client: httpx.Client | None = None) -> None:
        if not token and not (email and password):
            raise ValueError("give --token, or --email and --password")
        self.url = url.rstrip("/")
        self.email, self.password, self.token = email, password, token
        self.sync_timeout, self.poll_seconds = sync_timeout, poll_seconds
        self.http = client or httpx.Client(base_url=self.url, timeout=request_timeout)
        self.state: dict[str, Any] = {}

    @property
    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def _health(self) -> dict[str, Any]:
        resp = self.http.get("/api/health")
        if resp.status_code not in (200, 503):
            raise StepFailed(_error_text(resp))
        body = resp.json()
        if body.get("status") == "unhealthy":
            checks = body.get("checks", {}).items()
            failing = [f"{k}: {c.get('detail')}" for k, c in checks if c.get("status") == "fail"]
            raise StepFailed("status unhealthy (" + "; ".join(failing) + ")")
        return body

    def health(self) -> str:
        body = self._health()
        self.state["errors_before"] = {e["id"] for e in body.get("errors", [])}
        return f"{body['status']}, version {body.get('version')} ({body.get('channel')}, {body.get('commit')})"

    def token_step(self) -> str:
        if self.token:
            resp = self.http.get("/api/me", headers=self._auth)
            if resp.status_code != 200:
                raise StepFailed(f"the given token is refused: {_error_text(resp)}")
            return f"token of {resp.json().get('email')}"
        resp = self.http.post("/auth/token", json={"email": self.email, "password": self.password})
        if resp.status_code != 200:
            raise StepFailed(_error_text(resp))
        self.token = resp.json()["access_token"]
        return f"logged in as {self.email}"

    def catalog(self) -> str:
        resp = self.http.get("/api/catalog/tables", headers=self._auth)
        if resp.status_code != 200:
            raise StepFailed(_error_text(resp))
        body = resp.json()
        if not body.get("count"):
            raise StepFailed("the catalog has 0 tables (no source synced, or none readable by this user)")
        local = [t for t in body["tables"] if t.get("query_mode") == "local" and t.get("rows") is not None]
        self.state["table"] = (local or body["tables"])[0]  # remote tables have no stored row count
        return f"{body['count']} tables"

    def _query(self, sql: str) -> dict[str, Any]:
        resp = self.http.post("/api/query", json={"sql": sql}, headers=self._auth)
        if resp.status_code != 200:
            raise StepFailed(f"{sql!r}: {_error_text(resp)}")
        return resp.json()

    def query(self) -> str:
        body = self._query("SELECT 1 AS one")
        if body.get("rows") != [[1]]:
            raise StepFailed(f"SELECT 1 answered {body.get('rows')!r}")
        return f"SELECT 1 in {body.get('elapsed_ms')} ms"

    def read_back(self) -> str:
        table = self.state["table"]
        ident = table.get("qualified_name") or ".".join(f'"{part}"' for part in table["id"].split("."))
        counted = self._query(f"SELECT count(*) AS n FROM {ident}")["rows"][0][0]
        if counted != table.get("rows"):
            raise StepFailed(f"{table['id']}: the catalog says {table.get('rows')} rows, the query counted {counted}")
        return f"{table['id']}: {counted} rows, as in the catalog"

    def sync_trigger(self) -> str:
        resp = self.http.post("/api/sync/trigger", json={}, headers=self._auth)
        if resp.status_code != 200:
            raise StepFailed(_error_text(resp))
        self.state["job"] = resp.json()["job_id"]
        return f"job {self.state['job']} ({resp.json().get('status')})"

    def sync_wait(self) -> str:
        job_id, deadline = self.state["job"], time.monotonic() + self.sync_timeout
        while True:
            resp = self.http.get(f"/api/sync/jobs/{job_id}", headers=self._auth)
            if resp.status_code != 200:
                raise StepFailed(_error_text(resp))
            job = resp.json()
            if job["status"] in FINAL:
                break
            if time.monotonic() > deadline:
                raise StepFailed(f"job {job_id} still {job['status']} after {self.sync_timeout:g}s")
            time.sleep(self.poll_seconds)
        if job["status"] != "succeeded":
            bad = [f"{t['id']}: {t.get('error')}" for t in job.get("tables", []) if t.get("status") != "succeeded"]
            why = bad or [job.get("error") or ""] + (job.get("log_tail") or "").strip().splitlines()[-1:]
            raise StepFailed(f"job {job_id} {job['status']}: " + "; ".join(w for w in why if w)[:400])
        return f"job {job_id} succeeded ({len(job.get('tables', []))} tables)"

    def health_after(self) -> str:
        body = self._health()
        new = [e for e in body.get("errors", []) if e["id"] not in self.state.get("errors_before", set())]
        if new:
            raise StepFailed("new health errors: " + ", ".join(f"{e['code']} ({e.get('source')})" for e in new))
        return f"{body['status']}, no new errors"

    def run(self) -> Report:
        actions: dict[str, Callable[[], str]] = {
            "health": self.health, "token": self.token_step, "catalog": self.catalog, "query": self.query,
            "read_back": self.read_back, "sync_trigger": self.sync_trigger, "sync_wait": self.sync_wait,
            "health_after": self.health_after,
        }
        steps: list[Step] = []
        failed: str | None = None
        began = time.monotonic()
        for name in STEPS:
            if failed:
                steps.append(Step(name, "skipped", 0.0, f"not run: {failed} failed"))
                continue
            start = time.monotonic()
            try:
                detail, status = actions[name](), "passed"
            except StepFailed as exc:
                detail, status = str(exc), "failed"
            except httpx.HTTPError as exc:
                detail, status = f"{type(exc).__name__}: {exc or 'no answer'} ({self.url})", "failed"
            except (ValueError, KeyError, IndexError, TypeError) as exc:  # an answer not in the documented shape
                detail, status = f"unexpected answer: {type(exc).__name__}: {exc}", "failed"
            if status == "failed":
                failed = name
            steps.append(Step(name, status, round(time.monotonic() - start, 3), detail))  # type: ignore[arg-type]
        return Report(self.url, failed is None, failed, round(time.monotonic() - began, 3), steps)
