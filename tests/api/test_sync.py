"""The /api/sync endpoints through the real app (in-process jobs, real connectors)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from agnes.services.sources import ensure_external_source
from tests.conftest import create_user, login

Client = AsyncTestClient[Litestar]


async def wait_final(client: Client, headers: dict[str, str], job_id: int) -> dict[str, Any]:
    for _ in range(300):
        job = (await client.get(f"/api/sync/jobs/{job_id}", headers=headers)).json()
        if job["status"] not in ("queued", "running"):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def error_of(resp: Any, status: int, code: str) -> dict[str, str]:
    assert resp.status_code == status, resp.text
    body = resp.json()["error"]
    assert body["code"] == code and body["hint"], body
    return body


async def test_trigger_refusals_say_how_to_fix_the_call(client: Client, admin_token: str, auth: Callable) -> None:
    h = auth(admin_token)
    err = error_of(await client.post("/api/sync/trigger", json={}, headers=h), 400, "no_sources")
    assert "POST /api/admin/configure" in err["hint"]
    assert (await client.post("/api/admin/configure", json={"data_source": "sample"}, headers=h)).status_code == 200
    err = error_of(await client.post("/api/sync/trigger", json={"source": "nope"}, headers=h), 404, "source_not_found")
    assert "sample" in err["hint"] and "POST /api/admin/configure" in err["hint"]
    err = error_of(await client.post("/api/sync/trigger", json={"tables": ["orders"]}, headers=h), 400,
                   "tables_need_source")
    assert "source" in err["hint"]
    error_of(await client.post("/api/sync/trigger", json={"source": "Bad Name"}, headers=h), 400, "validation_failed")
    error_of(await client.post("/api/sync/trigger", json={"everything": True}, headers=h), 400, "validation_failed")
    await ensure_external_source(client.app.state.instance, "outside")  # Tier B: no connector to run
    err = error_of(await client.post("/api/sync/trigger", json={"source": "outside"}, headers=h), 400,
                   "source_not_syncable")
    assert "inbox" in err["hint"]
    everything = (await client.post("/api/sync/trigger", json={}, headers=h)).json()
    assert everything["sources"] == ["sample"]
    await wait_final(client, h, everything["job_id"])


async def test_trigger_list_get_and_cancel(client: Client, admin_token: str, auth: Callable) -> None:
    h = auth(admin_token)
    await client.post("/api/admin/configure", json={"data_source": "sample"}, headers=h)
    resp = await client.post("/api/sync/trigger", json={"source": "sample"}, headers=h)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["sources"] == ["sample"] and body["status"] in ("queued", "running") and body["created"] is True
    again = (await client.post("/api/sync/trigger", json={}, headers=h)).json()
    assert again["job_id"] == body["job_id"] and again["created"] is False

    job = await wait_final(client, h, body["job_id"])
    assert job["status"] == "succeeded" and job["finished_at"] and job["log_tail"]
    assert {t["id"] for t in job["tables"]} == {"sample.customers", "sample.orders", "sample.products"}
    assert set(job) >= {"id", "status", "sources", "tables", "created_at", "started_at", "finished_at", "log_tail"}

    second = (await client.post("/api/sync/trigger", json={"source": "sample", "tables": ["orders"]},
                                headers=h)).json()
    done = await wait_final(client, h, second["job_id"])
    assert done["requested_tables"] == ["orders"] and [t["id"] for t in done["tables"]] == ["sample.orders"]

    page = (await client.get("/api/sync/jobs", headers=h)).json()
    assert page["total"] == 2 and [j["id"] for j in page["items"]] == [second["job_id"], body["job_id"]]
    page = (await client.get("/api/sync/jobs?limit=1&offset=1", headers=h)).json()
    assert page["count"] == 1 and page["items"][0]["id"] == body["job_id"] and page["total"] == 2
    assert (await client.get("/api/sync/jobs?status=failed", headers=h)).json()["total"] == 0
    assert (await client.get("/api/sync/jobs?source=sample&status=succeeded", headers=h)).json()["total"] == 2
    assert (await client.get("/api/sync/jobs?source=other", headers=h)).json()["total"] == 0
    err = error_of(await client.get("/api/sync/jobs?state=failed", headers=h), 400, "validation_failed")
    assert "status" in err["hint"]

    err = error_of(await client.post(f"/api/sync/jobs/{body['job_id']}/cancel", headers=h), 409, "job_finished")
    assert "/api/sync/jobs/{id}" in err["hint"]
    error_of(await client.post("/api/sync/jobs/999/cancel", headers=h), 404, "job_not_found")
    error_of(await client.get("/api/sync/jobs/999", headers=h), 404, "job_not_found")


async def test_sync_is_admin_only(client: Client, admin_token: str, auth: Callable) -> None:
    await create_user(client, admin_token, "analyst@example.com", "analyst")
    analyst = auth(await login(client, "analyst@example.com", "another-long-passphrase"))
    error_of(await client.post("/api/sync/trigger", json={}, headers=analyst), 403, "forbidden")
    error_of(await client.get("/api/sync/jobs", headers=analyst), 403, "forbidden")
    error_of(await client.get("/api/sync/jobs"), 401, "not_authenticated")
    error_of(await client.post("/api/sync/jobs/1/cancel"), 401, "not_authenticated")


async def test_a_publication_that_cannot_be_recorded_is_discarded_and_the_old_run_serves(
        client: Client, admin_token: str, auth: Callable, monkeypatch: Any) -> None:
    import sqlite3

    from agnes.control import publications

    h = auth(admin_token)
    instance = client.app.state.instance
    await client.post("/api/admin/configure", json={"data_source": "sample"}, headers=h)
    first = (await client.post("/api/sync/trigger", json={"source": "sample"}, headers=h)).json()
    assert (await wait_final(client, h, first["job_id"]))["status"] == "succeeded"
    runs = instance.settings.extracts_dir / "sample" / "runs"
    served = sorted(p.name for p in runs.iterdir())
    async with instance.control.read() as conn:
        recorded = (await publications.get(conn, "sample")).run_id
    assert served == [recorded]

    async def refuse(*_: Any, **__: Any) -> Any:
        raise sqlite3.OperationalError("disk I/O error")  # the commit point fails

    monkeypatch.setattr(publications, "record", refuse)
    second = (await client.post("/api/sync/trigger", json={"source": "sample"}, headers=h)).json()
    job = await wait_final(client, h, second["job_id"])
    assert job["status"] == "failed", job
    assert sorted(p.name for p in runs.iterdir()) == served  # the installed run went with the failed record
    async with instance.control.read() as conn:
        assert (await publications.get(conn, "sample")).run_id == recorded
    monkeypatch.undo()
    rows = await client.post("/api/query", json={"sql": "SELECT count(*) AS n FROM sample.customers"}, headers=h)
    assert rows.status_code == 200 and rows.json()["rows"] == [[2000]], rows.text
