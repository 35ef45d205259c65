"""Grants API and the read rule seen through the catalog: grants, visibility, visible_to_all, admins."""

from __future__ import annotations

from tests.api.source_helpers import audit_rows
from tests.conftest import create_user, login
from tests.serving_helpers import wait_job


async def viewer(client, admin_token, email="viewer@example.com", role="viewer"):
    user = await create_user(client, admin_token, email, role)
    return user["id"], {"Authorization": f"Bearer {await login(client, email, 'another-long-passphrase')}"}


async def visible(client, headers):
    resp = await client.get("/api/catalog/tables", headers=headers)
    assert resp.status_code == 200, resp.text
    return {t["id"] for t in resp.json()["tables"]}


def err(resp, status, code):
    assert resp.status_code == status, resp.text
    body = resp.json()["error"]
    assert body["code"] == code and body["hint"], body
    return body


async def test_grant_list_revoke_and_the_read_rule(client, admin_token, auth, served, app):
    admin = auth(admin_token)
    uid, me = await viewer(client, admin_token)
    assert await visible(client, me) == set()  # new sources are not visible to all
    assert await visible(client, admin) == served  # admins read everything

    resp = await client.post("/api/admin/grants", json={"user_id": uid, "target": "sample.orders"}, headers=admin)
    assert resp.status_code == 200 and resp.json()["created"] is True, resp.text
    assert resp.json()["user_email"] == "viewer@example.com" and resp.json()["source"] == "sample"
    again = await client.post("/api/admin/grants", json={"user_id": uid, "target": "sample.orders"}, headers=admin)
    assert again.json()["created"] is False and again.json()["id"] == resp.json()["id"]
    assert await visible(client, me) == {"sample.orders"}

    await client.post("/api/admin/grants", json={"user_id": uid, "target": "hr.*"}, headers=admin)
    assert await visible(client, me) == {"sample.orders", "hr.salaries", "hr.vault"}
    listed = (await client.get(f"/api/admin/grants?user_id={uid}", headers=admin)).json()
    assert listed["count"] == 2 and [g["target"] for g in listed["items"]] == ["hr.*", "sample.orders"]
    assert (await client.get("/api/admin/grants?source=hr", headers=admin)).json()["count"] == 1
    assert (await client.get("/api/admin/grants?target=sample.orders", headers=admin)).json()["count"] == 1

    gone = await client.request("DELETE", "/api/admin/grants", json={"user_id": uid, "target": "hr.*"}, headers=admin)
    assert gone.status_code == 204, gone.text
    assert await visible(client, me) == {"sample.orders"}
    err(await client.request("DELETE", "/api/admin/grants", json={"user_id": uid, "target": "hr.*"}, headers=admin),
        404, "grant_not_found")
    actions = [a for a, _ in await audit_rows(app, "grant_")]
    assert actions == ["grant_created", "grant_created", "grant_revoked"]


async def test_visibility_and_visible_to_all(client, admin_token, auth, served):
    admin = auth(admin_token)
    uid, me = await viewer(client, admin_token)
    resp = await client.patch("/api/admin/sources/sample", json={"visible_to_all": True}, headers=admin)
    assert resp.status_code == 200, resp.text
    assert await visible(client, me) == {"sample.orders", "sample.customers", "sample.products"}
    await client.patch("/api/admin/tables/sample.customers", json={"visibility": "restricted"}, headers=admin)
    assert await visible(client, me) == {"sample.orders", "sample.products"}
    await client.post("/api/admin/grants", json={"user_id": uid, "target": "sample.customers"}, headers=admin)
    assert "sample.customers" in await visible(client, me)  # restricted = grants only
    await client.patch("/api/admin/tables/hr.vault", json={"visibility": "all"}, headers=admin)
    assert "hr.vault" in await visible(client, me) and "hr.salaries" not in await visible(client, me)
    await client.patch("/api/admin/sources/sample", json={"visible_to_all": False}, headers=admin)
    assert await visible(client, me) == {"sample.customers", "hr.vault"}


async def test_grant_refusals_say_how_to_fix(client, admin_token, auth, served):
    admin = auth(admin_token)
    uid, me = await viewer(client, admin_token)
    body = err(await client.post("/api/admin/grants", json={"user_id": uid, "target": "orders"}, headers=admin),
               400, "invalid_grant_target")
    assert "sample.*" in body["hint"]
    body = err(await client.post("/api/admin/grants", json={"user_id": uid, "target": "nope.*"}, headers=admin),
               400, "invalid_grant_target")
    assert "/api/admin/sources" in body["hint"]
    body = err(await client.post("/api/admin/grants", json={"user_id": uid, "target": "sample.nope"},
                                 headers=admin), 400, "invalid_grant_target")
    assert "GET /api/admin/tables?source=sample" in body["hint"]
    err(await client.post("/api/admin/grants", json={"user_id": 999, "target": "sample.*"}, headers=admin),
        404, "user_not_found")
    err(await client.post("/api/admin/grants", json={"user_id": uid, "target": "sample.*", "x": 1}, headers=admin),
        400, "validation_failed")
    err(await client.get("/api/admin/grants?user=1", headers=admin), 400, "validation_failed")
    err(await client.post("/api/admin/grants", json={"user_id": uid, "target": "sample.*"}, headers=me),
        403, "forbidden")
    err(await client.get("/api/admin/grants"), 401, "not_authenticated")


async def test_grants_go_with_their_user_and_source(client, admin_token, auth, served):
    admin = auth(admin_token)
    uid, _ = await viewer(client, admin_token)
    await client.post("/api/admin/grants", json={"user_id": uid, "target": "hr.salaries"}, headers=admin)
    await client.post("/api/admin/grants", json={"user_id": uid, "target": "sample.*"}, headers=admin)
    resp = await client.delete("/api/admin/sources/hr?confirm=hr", headers=admin)
    assert resp.status_code == 204, resp.text
    assert [g["target"] for g in (await client.get("/api/admin/grants", headers=admin)).json()["items"]] == [
        "sample.*"]
    assert (await client.delete(f"/api/users/{uid}", headers=admin)).status_code == 204
    assert (await client.get("/api/admin/grants", headers=admin)).json()["count"] == 0


async def test_unregistering_a_table_never_widens_who_reads_it(client, admin_token, auth, served):
    """A served table with no registry row is readable by grants (and admins) only: deleting a
    restricted table's registration in a visible_to_all source must not open it to everyone."""
    admin = auth(admin_token)
    uid, me = await viewer(client, admin_token)
    await client.patch("/api/admin/sources/sample", json={"visible_to_all": True}, headers=admin)
    await client.patch("/api/admin/tables/sample.customers", json={"visibility": "restricted"}, headers=admin)
    assert "sample.customers" not in await visible(client, me)
    resp = await client.delete("/api/admin/tables/sample.customers", headers=admin)
    assert resp.status_code == 204, resp.text
    assert "sample.customers" in await visible(client, admin)  # still served: admins read it
    assert await visible(client, me) == {"sample.orders", "sample.products"}
    query = await client.post("/api/query", json={"sql": "SELECT count(*) FROM sample.customers"}, headers=me)
    err(query, 404, "table_not_found")
    manifest = await client.get("/api/data/manifest", headers=admin)
    assert "sample.customers" in {i["id"] for i in manifest.json()["items"]}

    # the next sync registers the still-extracted table again: restricted, not `inherit`
    job = (await client.post("/api/sync/trigger", json={"source": "sample"}, headers=admin)).json()
    assert (await wait_job(client, admin, job["job_id"]))["status"] == "succeeded"
    again = (await client.get("/api/admin/tables/sample.customers", headers=admin)).json()
    assert again["visibility"] == "restricted", again
    assert await visible(client, me) == {"sample.orders", "sample.products"}
    await client.post("/api/admin/grants", json={"user_id": uid, "target": "sample.*"}, headers=admin)
    assert "sample.customers" in await visible(client, me)  # a source grant still covers it


async def test_information_schema_lists_only_readable_tables(client, admin_token, auth, served):
    admin = auth(admin_token)
    uid, me = await viewer(client, admin_token)
    await client.post("/api/admin/grants", json={"user_id": uid, "target": "sample.orders"}, headers=admin)
    sql = "SELECT table_schema || '.' || table_name FROM information_schema.tables ORDER BY 1"
    everything = await client.post("/api/query", json={"sql": sql}, headers=admin)  # asked first: never reused
    assert everything.status_code == 200, everything.text
    assert {r[0] for r in everything.json()["rows"]} == served
    mine = await client.post("/api/query", json={"sql": sql}, headers=me)
    assert mine.status_code == 200, mine.text
    assert mine.json()["rows"] == [["sample.orders"]]
    cols = await client.post("/api/query", json={"sql": "SELECT DISTINCT table_name FROM information_schema.columns"},
                             headers=me)
    assert cols.json()["rows"] == [["orders"]]


async def test_a_deleted_source_takes_its_unregistered_markers_along(client, admin_token, auth, served):
    """A table unregistered while restricted stays restricted when it comes back -- but only within
    that source's life: a new source of the same name starts afresh (registered as `inherit`)."""
    admin = auth(admin_token)
    await client.patch("/api/admin/tables/hr.vault", json={"visibility": "restricted"}, headers=admin)
    await client.patch("/api/admin/tables/sample.customers", json={"visibility": "restricted"}, headers=admin)
    for table in ("hr.vault", "sample.customers"):
        assert (await client.delete(f"/api/admin/tables/{table}", headers=admin)).status_code == 204
    assert (await client.delete("/api/admin/sources/sample?confirm=sample", headers=admin)).status_code == 204

    resp = await client.post("/api/admin/configure", json={"data_source": "sample"}, headers=admin)
    assert resp.status_code == 200, resp.text
    job = (await client.post("/api/sync/trigger", json={"source": "sample"}, headers=admin)).json()
    assert (await wait_job(client, admin, job["job_id"]))["status"] == "succeeded"
    fresh = (await client.get("/api/admin/tables/sample.customers", headers=admin)).json()
    assert fresh["visibility"] == "inherit", fresh
    # hr kept its marker: its table comes back restricted on hr's next sync
    job = (await client.post("/api/sync/trigger", json={"source": "hr"}, headers=admin)).json()
    assert (await wait_job(client, admin, job["job_id"]))["status"] == "succeeded"
    kept = (await client.get("/api/admin/tables/hr.vault", headers=admin)).json()
    assert kept["visibility"] == "restricted", kept
