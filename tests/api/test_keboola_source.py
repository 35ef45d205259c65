"""A keboola source end to end through the API, against the local Keboola Storage API server.

configure (live check) -> discover-and-register -> sync -> typed query; a failing table makes the job
partial and keeps its previous data; env tokens at first start create the source and its first sync
registers the tables on its own - once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from agnes.app import create_app
from agnes.devtools.keboola_server import KeboolaData, KeboolaServer
from agnes.settings import Settings
from tests.conftest import bootstrap
from tests.connectors.keboola.support import TOKEN, customers_table, keboola_server, orders_table
from tests.serving_helpers import wait_job, wait_served


@pytest.fixture
def kbc(tmp_path: Path) -> Iterator[KeboolaServer]:
    data = KeboolaData(tmp_path / "kbc")
    orders_table(data)
    customers_table(data)
    with keboola_server(data.root) as server:
        yield server


def error(resp: Any, status: int, code: str) -> dict[str, str]:
    assert resp.status_code == status, resp.text
    body = resp.json()["error"]
    assert body["code"] == code and body["hint"], body
    return body


async def sync(client: Any, h: dict[str, str], **body: Any) -> dict[str, Any]:
    resp = await client.post("/api/sync/trigger", json={"source": "keboola", **body}, headers=h)
    assert resp.status_code == 200, resp.text
    return await wait_job(client, h, resp.json()["job_id"])


async def query(client: Any, h: dict[str, str], sql: str) -> dict[str, Any]:
    resp = await client.post("/api/query", json={"sql": sql}, headers=h)
    assert resp.status_code == 200, resp.text
    return resp.json()


async def test_configure_checks_the_token_live_and_says_where_to_set_it(client, admin_token, auth, kbc,
                                                                        monkeypatch) -> None:
    h = auth(admin_token)
    monkeypatch.setenv("KEBOOLA_STORAGE_TOKEN", TOKEN)  # only Settings (read at start) count, never os.environ now
    monkeypatch.setenv("KEBOOLA_STACK_URL", kbc.url)
    missing = error(await client.post("/api/admin/configure", json={"data_source": "keboola", "keboola_url": kbc.url},
                                      headers=h), 400, "missing_credentials")
    assert "KEBOOLA_STORAGE_TOKEN" in missing["message"] + missing["hint"] and "keboola_token" in missing["hint"]
    no_url = error(await client.post("/api/admin/configure", json={"data_source": "keboola", "keboola_token": TOKEN},
                                     headers=h), 400, "invalid_option")
    assert "KEBOOLA_STACK_URL" in no_url["hint"]
    bad = error(await client.post("/api/admin/configure", headers=h, json={
        "data_source": "keboola", "keboola_url": kbc.url, "keboola_token": "not-a-token"}), 400, "invalid_credentials")
    assert "Invalid access token" in bad["message"] and "keboola_token" in bad["hint"]
    when = error(await client.post("/api/admin/configure", headers=h, json={
        "data_source": "keboola", "keboola_url": kbc.url, "keboola_token": TOKEN, "full_reload_before": "soon"}),
        400, "invalid_option")
    assert "full_reload_before" in when["message"] and "ISO" in when["message"]
    negative = error(await client.post("/api/admin/configure", headers=h, json={
        "data_source": "keboola", "keboola_url": kbc.url, "keboola_token": TOKEN,
        "changed_since_safety_seconds": -5}), 400, "invalid_option")
    assert "changed_since_safety_seconds" in negative["message"] and "0..604800" in negative["hint"]
    workers = error(await client.post("/api/admin/configure", headers=h, json={
        "data_source": "keboola", "keboola_url": kbc.url, "keboola_token": TOKEN, "export_workers": 0}),
        400, "invalid_option")
    assert "export_workers" in workers["message"] and "1..16" in workers["message"]
    plain = error(await client.post("/api/admin/configure", headers=h, json={
        "data_source": "keboola", "keboola_url": "http://connection.keboola.com", "keboola_token": TOKEN}),
        400, "invalid_option")
    assert "https://" in plain["message"] and "https://connection.keboola.com" in plain["hint"]
    assert (await client.get("/api/admin/sources", headers=h)).json()["count"] == 0  # nothing stored
    assert kbc.faults.requests and all(r[1] == "/v2/storage/buckets" for r in kbc.faults.requests)


async def test_url_and_token_fall_back_to_the_server_settings(make_settings, data_dir, kbc) -> None:
    settings = make_settings(KEBOOLA_STORAGE_TOKEN=TOKEN, KEBOOLA_STACK_URL=kbc.url)
    async with AsyncTestClient(app=create_app(settings)) as client:
        h = {"Authorization": f"Bearer {await bootstrap(client, data_dir)}"}
        resp = await client.post("/api/admin/configure", json={"data_source": "keboola", "name": "kbc"}, headers=h)
        assert resp.status_code == 200, resp.text
        assert resp.json()["options"]["keboola_url"] == kbc.url
        assert resp.json()["secrets"]["keboola_token"] != TOKEN and TOKEN not in resp.text


async def test_discover_sync_and_query_typed_data(client, admin_token, auth, kbc) -> None:
    h = auth(admin_token)
    resp = await client.post("/api/admin/configure", headers=h, json={
        "data_source": "keboola", "keboola_url": kbc.url, "keboola_token": TOKEN})
    assert resp.status_code == 200, resp.text
    kbc.data.put_table("in.c-crm.a-b", ["id"], [[1]])
    kbc.data.put_table("in.c-crm.a_b", ["id"], [[2]])

    found = (await client.post("/api/admin/discover-and-register?source=keboola", headers=h)).json()["sources"][0]
    assert [t["id"] for t in found["registered"]] == ["keboola.in_c_crm_customers", "keboola.in_c_crm_orders"]
    assert {(t["name"], t["native_id"]) for t in found["invalid"]} == {("in_c_crm_a_b", "in.c-crm.a-b"),
                                                                         ("in_c_crm_a_b", "in.c-crm.a_b")}
    orders = (await client.get("/api/admin/tables/keboola.in_c_crm_orders", headers=h)).json()
    assert orders["native_id"] == "in.c-crm.orders" and orders["description"] == "Orders from the CRM"
    assert {c["name"]: c["type"] for c in orders["columns"]}["amount"] == "DECIMAL(12,2)"

    edit = await client.patch("/api/admin/tables/keboola.in_c_crm_orders", headers=h,
                              json={"description": "Curated by the admin", "visibility": "all"})
    assert edit.status_code == 200, edit.text
    again = (await client.post("/api/admin/discover-and-register?source=keboola", headers=h)).json()["sources"][0]
    assert again["registered"] == [] and len(again["skipped"]) == 2
    orders = (await client.get("/api/admin/tables/keboola.in_c_crm_orders", headers=h)).json()
    assert (orders["description"], orders["visibility"]) == ("Curated by the admin", "all")

    job = await sync(client, h)
    assert job["status"] == "succeeded", job
    assert {t["id"]: t["rows"] for t in job["tables"]} == {"keboola.in_c_crm_orders": 3,
                                                           "keboola.in_c_crm_customers": 2}
    await wait_served(client, {"keboola.in_c_crm_orders"})
    body = await query(client, h, "SELECT id, amount, paid, ordered_on, created_at FROM keboola.in_c_crm_orders "
                                  "ORDER BY id")
    assert [c["type"] for c in body["columns"]] == ["BIGINT", "DECIMAL(12,2)", "BOOLEAN", "DATE", "TIMESTAMP"]
    assert body["rows"][0][0] == 1 and body["rows"][0][2] is True and body["row_count"] == 3

    # drift: a column added in Keboola is reported once, then followed
    customers_table(kbc.data)
    meta = kbc.data.meta("in.c-crm.customers")
    kbc.data.put_table("in.c-crm.customers", [*meta["columns"], "city"], [[10, "Acme", "0.5", "Brno"],
                                                                          [11, "Globex", "1.25", "Praha"]],
                       types={"id": "INTEGER", "name": "STRING", "score": "FLOAT", "city": "STRING"},
                       primary_key=["id"])
    drift = (await client.post("/api/admin/discover-and-register?source=keboola", headers=h)).json()["sources"][0]
    assert [(d["id"], d["added"]) for d in drift["drifted"]] == [("keboola.in_c_crm_customers", ["city"])]

    # a value that does not parse under its declared type: reported on the job, the column kept as text
    kbc.data.put_table("in.c-crm.orders", ["id", "amount"], [[1, "12.50"], [2, "n/a"]],
                       types={"id": "INTEGER", "amount": ("NUMERIC", "12,2")}, primary_key=["id"])
    job = await sync(client, h, tables=["in_c_crm_orders"])
    assert job["status"] == "succeeded", job
    assert "table in_c_crm_orders warning:" in job["log_tail"] and "'amount'" in job["log_tail"]
    assert "1 value(s) do not parse as DECIMAL(12,2) (e.g. 'n/a')" in job["log_tail"]
    [orders_outcome] = [t for t in job["tables"] if t["id"] == "keboola.in_c_crm_orders"]
    assert orders_outcome["status"] == "succeeded" and len(orders_outcome["warnings"]) == 1  # kept on the outcome
    assert "'amount'" in orders_outcome["warnings"][0] and "(e.g. 'n/a')" in orders_outcome["warnings"][0]
    assert "kept as VARCHAR" in orders_outcome["warnings"][0]
    listed = (await client.get("/api/sync/jobs", headers=h)).json()["items"]
    assert next(j for j in listed if j["id"] == job["id"])["tables"][0]["warnings"] == orders_outcome["warnings"]

    # one failing table: job partial, Keboola's message on the table, its previous data keeps serving
    kbc.faults.job_error["in.c-crm.customers"] = "Storage backend is in maintenance"
    job = await sync(client, h)
    assert job["status"] == "partial", job
    by_id = {t["id"]: t for t in job["tables"]}
    assert by_id["keboola.in_c_crm_customers"]["status"] == "failed"
    assert "in.c-crm.customers" in by_id["keboola.in_c_crm_customers"]["error"]
    assert "Storage backend is in maintenance" in by_id["keboola.in_c_crm_customers"]["error"]
    assert by_id["keboola.in_c_crm_orders"]["status"] == "succeeded"
    assert len(by_id["keboola.in_c_crm_orders"]["warnings"]) == 1  # still 'n/a': this job's own warning, once
    assert by_id["keboola.in_c_crm_customers"]["warnings"] == []
    await wait_served(client, {"keboola.in_c_crm_customers"})
    kept = await query(client, h, "SELECT count(*) AS n FROM keboola.in_c_crm_customers")
    assert kept["rows"] == [[2]]


async def test_env_tokens_at_first_start_create_the_source_and_its_first_sync_registers(
        tmp_path: Path, kbc: KeboolaServer) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    settings = Settings.load({"DATA_DIR": str(data_dir), "KEBOOLA_STORAGE_TOKEN": TOKEN, "KEBOOLA_STACK_URL": kbc.url})
    async with AsyncTestClient(app=create_app(settings)) as client:
        h = {"Authorization": f"Bearer {await bootstrap(client, data_dir)}"}
        sources = (await client.get("/api/admin/sources", headers=h)).json()["items"]
        assert [(s["name"], s["type"], s["origin"], s["tables"]) for s in sources] == [
            ("keboola", "keboola", "environment", 0)]
        assert sources[0]["options"]["keboola_url"] == kbc.url

        job = await sync(client, h)
        assert job["status"] == "succeeded", job
        assert "first sync: discovered and registered 2 table(s)" in job["log_tail"]
        tables = (await client.get("/api/admin/tables?source=keboola", headers=h)).json()
        assert tables["count"] == 2

        # an admin unregisters a table: later syncs - full or scoped to it - never bring it back
        assert (await client.delete("/api/admin/tables/keboola.in_c_crm_customers", headers=h)).status_code == 204
        job = await sync(client, h)
        assert job["status"] == "succeeded" and "discovered" not in job["log_tail"]
        scoped = await sync(client, h, tables=["in_c_crm_customers"])
        assert scoped["status"] == "failed" and "discover-and-register" in scoped["log_tail"]
        names = [t["name"] for t in (await client.get("/api/admin/tables?source=keboola", headers=h)).json()["items"]]
        assert names == ["in_c_crm_orders"]

        resp = await client.delete("/api/admin/sources/keboola?confirm=keboola", headers=h)
        assert resp.status_code == 204, resp.text
    async with AsyncTestClient(app=create_app(Settings.load({"DATA_DIR": str(data_dir)}))) as client:
        h = {"Authorization": f"Bearer {(await client.post('/auth/token', json={'email': 'admin@example.com', 'password': 'correct-horse-battery-staple'})).json()['access_token']}"}  # noqa: E501
        assert (await client.get("/api/admin/sources", headers=h)).json()["count"] == 0  # not re-created


async def test_a_second_sync_is_incremental_and_full_reload_on_demand(client, admin_token, auth,
                                                                      tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    t0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    data = KeboolaData(tmp_path / "kbc-inc")
    orders_table(data, at=t0)
    h = auth(admin_token)
    with keboola_server(data.root) as kbc:
        resp = await client.post("/api/admin/configure", headers=h, json={
            "data_source": "keboola", "keboola_url": kbc.url, "keboola_token": TOKEN,
            "changed_since_safety_seconds": 900})
        assert resp.status_code == 200, resp.text
        found = (await client.post("/api/admin/discover-and-register?source=keboola", headers=h)).json()
        assert [t["id"] for t in found["sources"][0]["registered"]] == ["keboola.in_c_crm_orders"]

        def exports() -> list[dict[str, list[str]]]:
            forms = [f for _, p, f in kbc.faults.requests if p.endswith("/in.c-crm.orders/export-async")]
            kbc.faults.requests.clear()
            return forms

        job = await sync(client, h)
        assert job["status"] == "succeeded", job
        assert [f.get("changedSince") for f in exports()] == [None]  # nothing before: a full export

        # Keboola receives an incremental load: one row changed, one new
        data.upsert_rows("in.c-crm.orders", [[2, "8.00", "true", "2024-01-03", "", "", "changed"],
                                            [4, "1.00", "false", "2024-03-01", "", "", "new"]],
                         at=t0 + timedelta(hours=1))
        job = await sync(client, h)
        assert job["status"] == "succeeded", job
        since = (t0 - timedelta(seconds=900)).strftime("%Y-%m-%dT%H:%M:%S+00:00")  # previous cursor - safety
        assert [f.get("changedSince") for f in exports()] == [[since]]
        assert {t["id"]: t["rows"] for t in job["tables"]} == {"keboola.in_c_crm_orders": 4}
        await wait_served(client, {"keboola.in_c_crm_orders"})
        merged = await query(client, h, "SELECT id, amount::VARCHAR, note FROM keboola.in_c_crm_orders ORDER BY id")
        assert merged["rows"] == [[1, "12.50", "first"], [2, "8.00", "changed"], [3, "100.00", 'quote " and, comma'],
                                  [4, "1.00", "new"]]

        # full reload on demand: the next sync exports in full once, the one after is incremental again
        asked = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        resp = await client.post("/api/admin/configure", headers=h, json={
            "data_source": "keboola", "full_reload_before": asked})
        assert resp.status_code == 200, resp.text
        full = await sync(client, h)
        assert full["status"] == "succeeded", full
        assert [f.get("changedSince") for f in exports()] == [None]
        again = await sync(client, h)
        assert again["status"] == "succeeded", again
        later = (t0 + timedelta(hours=1) - timedelta(seconds=900)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
        assert [f.get("changedSince") for f in exports()] == [[later]]
        await wait_served(client, {"keboola.in_c_crm_orders"})
        assert (await query(client, h, "SELECT count(*) FROM keboola.in_c_crm_orders"))["rows"] == [[4]]
