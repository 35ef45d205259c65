"""Discover-and-register and the registry admin API (/api/admin/tables)."""

from __future__ import annotations

from tests.api.source_helpers import audit_rows, sql
from tests.conftest import create_user


def ids(items):
    return [t["id"] for t in items]


async def discover(client, h, query=""):
    resp = await client.post(f"/api/admin/discover-and-register{query}", headers=h)
    assert resp.status_code == 200, resp.text
    return resp.json()


async def test_sample_discovery_dry_run_then_real_then_idempotent(client, admin_token, auth, app):
    h = auth(admin_token)
    assert (await client.post("/api/admin/configure", json={"data_source": "sample"}, headers=h)).status_code == 200
    dry = await discover(client, h, "?dry_run=true")
    assert dry["dry_run"] is True
    assert ids(dry["sources"][0]["registered"]) == ["sample.customers", "sample.orders", "sample.products"]
    assert (await client.get("/api/admin/tables", headers=h)).json()["count"] == 0
    real = (await discover(client, h))["sources"][0]
    assert ids(real["registered"]) == ["sample.customers", "sample.orders", "sample.products"]
    assert real["skipped"] == real["drifted"] == real["invalid"] == real["missing"] == [] and real["error"] is None
    again = (await discover(client, h, "?source=sample"))["sources"][0]
    assert again["registered"] == [] and len(again["skipped"]) == 3
    orders = (await client.get("/api/admin/tables/sample.orders", headers=h)).json()
    assert orders["native_id"] == "orders" and orders["visibility"] == "inherit" and orders["edited"] == []
    assert {"name": "total", "type": "DECIMAL(12,2)"} in orders["columns"]
    assert "joins customers" in orders["description"]
    assert [a for a, _ in await audit_rows(app, "tables_")] == ["tables_registered"]


async def test_admin_edits_are_never_overwritten(client, admin_token, auth, app):
    h = auth(admin_token)
    await client.post("/api/admin/configure", json={"data_source": "sample"}, headers=h)
    await discover(client, h)
    edit = await client.patch("/api/admin/tables/sample.orders", headers=h,
                              json={"description": "Curated orders", "visibility": "all"})
    assert edit.status_code == 200 and edit.json()["edited"] == ["description", "visibility"]
    await sql(app, "UPDATE registered_tables SET query_mode = 'remote' WHERE id = 'sample.customers'")
    await discover(client, h)
    orders = (await client.get("/api/admin/tables/sample.orders", headers=h)).json()
    assert (orders["description"], orders["visibility"]) == ("Curated orders", "all")
    customers = (await client.get("/api/admin/tables/sample.customers", headers=h)).json()
    assert customers["query_mode"] == "local"  # not edited by an admin: discovery keeps it current
    handed_back = await client.patch("/api/admin/tables/sample.orders", json={"description": None}, headers=h)
    assert handed_back.json()["edited"] == ["visibility"] and handed_back.json()["description"] is None
    await discover(client, h)
    assert "joins customers" in (await client.get("/api/admin/tables/sample.orders", headers=h)).json()["description"]
    assert [a for a, _ in await audit_rows(app, "table_")] == ["table_updated", "table_updated"]


async def test_csv_clashes_bad_files_drift_and_missing(client, admin_token, auth, data_dir):
    h = auth(admin_token)
    await client.post("/api/admin/configure", json={"data_source": "csv"}, headers=h)
    folder = data_dir / "uploads" / "csv"
    (folder / "Orders.csv").write_text("id,total\n1,2\n")
    (folder / "orders.csv").write_text("id,total\n3,4\n")
    (folder / "broken.csv").write_text("a,b\n1,2\n3\n")
    (folder / "customers.csv").write_text("id,name\n1,Ada\n")
    (folder / "???.csv").write_text("x\n1\n")
    result = (await discover(client, h, "?source=csv"))["sources"][0]
    assert ids(result["registered"]) == ["csv.customers"]
    invalid = {(i["name"], i["native_id"]): i["problem"] for i in result["invalid"]}
    assert set(invalid) == {("orders", "Orders.csv"), ("orders", "orders.csv"), ("broken", "broken.csv"),
                            ("???", "???.csv")}
    assert "never merged" in invalid[("orders", "orders.csv")] and "rename all but one" in invalid[("orders",
                                                                                                   "Orders.csv")]
    assert "broken.csv: line 3" in invalid[("broken", "broken.csv")]
    assert "letters or digits" in invalid[("???", "???.csv")]
    assert (await client.get("/api/admin/tables/csv.orders", headers=h)).status_code == 404  # never merged

    (folder / "customers.csv").write_text("id,name,email\nx1,Ada,ada@example.com\n")
    drift = (await discover(client, h, "?source=csv&dry_run=true"))["sources"][0]["drifted"]
    assert drift == [{"id": "csv.customers", "name": "customers", "native_id": "customers.csv", "added": ["email"],
                      "removed": [], "retyped": ["id: BIGINT -> VARCHAR"]}]
    assert (await discover(client, h, "?source=csv"))["sources"][0]["drifted"] == drift
    assert (await discover(client, h, "?source=csv"))["sources"][0]["drifted"] == []  # reported once, then current
    (folder / "customers.csv").unlink()
    gone = (await discover(client, h, "?source=csv"))["sources"][0]
    assert ids(gone["missing"]) == ["csv.customers"]
    assert (await client.get("/api/admin/tables/csv.customers", headers=h)).status_code == 200  # never auto-deleted


async def test_tables_api_errors_and_delete(client, admin_token, auth, app):
    h = auth(admin_token)
    await client.post("/api/admin/configure", json={"data_source": "sample"}, headers=h)
    await discover(client, h)
    listed = (await client.get("/api/admin/tables?source=sample", headers=h)).json()
    assert listed["count"] == 3
    cases = [
        (client.get("/api/admin/tables?source=nope", headers=h), 404, "source_not_found"),
        (client.get("/api/admin/tables?sorce=sample", headers=h), 400, "validation_failed"),
        (client.post("/api/admin/discover-and-register?dryrun=true", headers=h), 400, "validation_failed"),
        (client.post("/api/admin/discover-and-register?source=nope", headers=h), 404, "source_not_found"),
        (client.get("/api/admin/tables/orders", headers=h), 404, "table_not_found"),
        (client.patch("/api/admin/tables/sample.orders", json={}, headers=h), 400, "empty_update"),
        (client.patch("/api/admin/tables/sample.orders", json={"visibility": "public"}, headers=h), 400,
         "validation_failed"),
        (client.patch("/api/admin/tables/sample.orders", json={"name": "x"}, headers=h), 400, "validation_failed"),
        (client.patch("/api/admin/tables/sample.nope", json={"visibility": "all"}, headers=h), 404,
         "table_not_found"),
        (client.delete("/api/admin/tables/sample.nope", headers=h), 404, "table_not_found"),
    ]
    for call, status, code in cases:
        resp = await call
        assert resp.status_code == status and resp.json()["error"]["code"] == code, resp.text
    assert "sorce" in (await client.get("/api/admin/tables?sorce=x", headers=h)).json()["error"]["message"]
    viewer = await create_user(client, admin_token, "v@example.com", "viewer")
    for target in ("sample.orders", "sample.customers", "sample.*"):
        await sql(app, "INSERT INTO grants (user_id, target, source, created_at) VALUES (?, ?, 'sample', 'x')",
                  (viewer["id"], target))
    assert (await client.delete("/api/admin/tables/sample.orders", headers=h)).status_code == 204
    assert await sql(app, "SELECT target FROM grants ORDER BY target") == [("sample.*",), ("sample.customers",)]
    assert ids((await client.get("/api/admin/tables", headers=h)).json()["items"]) == ["sample.customers",
                                                                                        "sample.products"]
    assert [a for a, _ in await audit_rows(app, "table_")] == ["table_unregistered"]
