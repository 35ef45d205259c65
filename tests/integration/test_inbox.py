"""Tier B: a producer writes inbox/<name>/ and READY last; the server publishes,
registers and serves it, or refuses it with REJECTED + a health error."""

from __future__ import annotations

from pathlib import Path

import duckdb
from contract_tests.fixtures import build_valid_extract

from agnes.services.inbox import scan_inbox
from tests.api.test_sync import wait_final


def _drop(inbox: Path, name: str, *, rows_off_by: int = 0) -> Path:
    folder = inbox / name
    build_valid_extract(folder)
    if rows_off_by:
        with duckdb.connect(str(folder / "extract.duckdb")) as con:
            con.execute("UPDATE _meta SET rows = rows + ? WHERE table_name = 'orders'", [rows_off_by])
    (folder / "READY").touch()  # last, as the contract says
    return folder


async def test_inbox_run_is_published_registered_and_served(client, app, admin_token, auth, data_dir: Path):
    instance = app.state.instance
    h = auth(admin_token)
    inbox = instance.settings.inbox_dir
    (inbox / "partner").mkdir(parents=True)
    build_valid_extract(inbox / "partner")
    assert await scan_inbox(instance) == []  # no READY yet: the producer is still writing
    (inbox / "partner" / "READY").touch()
    [job_id] = await scan_inbox(instance)
    job = await wait_final(client, h, job_id)
    assert job["status"] == "succeeded", job
    tables = {t["id"]: t for t in job["tables"]}
    assert {"partner.orders", "partner.customers", "partner.events"} <= set(tables), job["tables"]
    assert tables["partner.orders"]["status"] == "succeeded" and tables["partner.orders"]["rows"] == 3
    assert not (inbox / "partner" / "READY").exists()
    assert not (inbox / "partner" / "extract.duckdb").exists()  # moved, not copied
    sources = (await client.get("/api/admin/sources", headers=h)).json()
    partner = next(s for s in sources["items"] if s["name"] == "partner")
    assert partner["type"] == "external"
    await instance.serving.refresh(force=True)
    assert "partner.orders" in {t.id for t in instance.serving.catalog.tables()}
    rows = instance.serving.catalog.execute_readonly('SELECT count(*) FROM "partner"."orders"').to_pylist()
    assert rows == [{"count_star()": 3}]
    # A second run replaces the first atomically.
    _drop(inbox, "partner")
    [second] = await scan_inbox(instance)
    assert (await wait_final(client, h, second))["status"] == "succeeded"


async def test_invalid_inbox_run_is_rejected_and_old_data_keeps_serving(client, app, admin_token, auth):
    instance = app.state.instance
    h = auth(admin_token)
    inbox = instance.settings.inbox_dir
    _drop(inbox, "partner")
    [good] = await scan_inbox(instance)
    assert (await wait_final(client, h, good))["status"] == "succeeded"
    _drop(inbox, "partner", rows_off_by=5)
    [bad] = await scan_inbox(instance)
    job = await wait_final(client, h, bad)
    assert job["status"] == "failed" and "rows_mismatch" in (job["error"] or "")
    rejected = (inbox / "partner" / "REJECTED").read_text()
    assert "rows_mismatch" in rejected and "orders" in rejected
    health = (await client.get("/api/health", headers=h)).json()
    assert any(e["code"] == "extract_invalid" and e["source"] == "partner" for e in health["errors"])
    await instance.serving.refresh(force=True)
    count = instance.serving.catalog.execute_readonly('SELECT count(*) AS n FROM "partner"."orders"').to_pylist()
    assert count == [{"n": 3}]  # the previous run keeps serving


async def test_inbox_name_problems_are_refused(client, app, admin_token, auth):
    instance = app.state.instance
    h = auth(admin_token)
    configured = await client.post("/api/admin/configure", json={"data_source": "sample"}, headers=h)
    assert configured.status_code == 200, configured.text
    inbox = instance.settings.inbox_dir
    _drop(inbox, "sample")  # taken by a non-external source
    _drop(inbox, "Bad-Name")
    assert await scan_inbox(instance) == []
    assert "already exists" in (inbox / "sample" / "REJECTED").read_text()
    assert (inbox / "Bad-Name" / "REJECTED").exists()
    assert not (inbox / "sample" / "READY").exists()  # not retried every tick
    health = (await client.get("/api/health", headers=h)).json()
    assert sum(e["code"] == "extract_invalid" for e in health["errors"]) == 2
