"""GET /api/catalog/tables[/{id}]: readable tables only, filters, descriptions, stats and samples."""

from __future__ import annotations

from tests.api.test_grants import err, viewer


async def test_list_shape_filters_and_admin_descriptions(client, admin_token, auth, served):
    admin = auth(admin_token)
    page = (await client.get("/api/catalog/tables", headers=admin)).json()
    assert page["count"] == len(page["tables"]) == 5
    orders = next(t for t in page["tables"] if t["id"] == "sample.orders")
    assert set(orders) == {"id", "source", "name", "qualified_name", "description", "rows", "size_bytes",
                           "extracted_at", "query_mode", "columns", "status"}
    assert (orders["source"], orders["name"], orders["qualified_name"]) == ("sample", "orders", '"sample"."orders"')
    assert orders["rows"] == 10_000 and orders["size_bytes"] > 0 and orders["status"] == "ok"
    assert orders["extracted_at"].endswith("Z") and orders["query_mode"] == "local"
    assert {"name": "total", "type": "DECIMAL(12,2)"} in orders["columns"]

    by_source = (await client.get("/api/catalog/tables?source=hr", headers=admin)).json()
    assert [t["id"] for t in by_source["tables"]] == ["hr.salaries", "hr.vault"]
    found = (await client.get("/api/catalog/tables?q=JOINS%20customers", headers=admin)).json()
    assert [t["id"] for t in found["tables"]] == ["sample.orders"]
    assert (await client.get("/api/catalog/tables?q=vault", headers=admin)).json()["count"] == 1
    assert (await client.get("/api/catalog/tables?source=nope", headers=admin)).json()["count"] == 0
    body = err(await client.get("/api/catalog/tables?search=x", headers=admin), 400, "validation_failed")
    assert "source, q" in body["hint"]

    await client.patch("/api/admin/tables/sample.orders", json={"description": "Curated by an admin"}, headers=admin)
    page = (await client.get("/api/catalog/tables?q=curated", headers=admin)).json()
    assert [t["description"] for t in page["tables"]] == ["Curated by an admin"]
    # Table ids stay the same across a re-sync.
    resp = await client.post("/api/sync/trigger", json={"source": "sample"}, headers=admin)
    from tests.serving_helpers import wait_job, wait_served

    await wait_job(client, admin, resp.json()["job_id"])
    await wait_served(client, {"sample.orders"})
    assert {t["id"] for t in (await client.get("/api/catalog/tables", headers=admin)).json()["tables"]} == served


async def test_detail_has_stats_and_samples(client, admin_token, auth, served):
    admin = auth(admin_token)
    resp = await client.get("/api/catalog/tables/sample.orders", headers=admin)
    assert resp.status_code == 200, resp.text
    detail = resp.json()
    assert detail["id"] == "sample.orders" and detail["stats_note"] is None
    columns = {c["name"]: c for c in detail["columns"]}
    assert columns["order_id"]["stats"] == {"non_null": 10_000, "nulls": 0, "distinct_approx":
                                            columns["order_id"]["stats"]["distinct_approx"], "min": "1",
                                            "max": "10000"}
    shipped = columns["shipped_on"]["stats"]
    assert shipped["nulls"] > 0 and shipped["non_null"] + shipped["nulls"] == 10_000
    assert detail["sample"]["columns"][0] == "order_id" and len(detail["sample"]["rows"]) == 5
    row = dict(zip(detail["sample"]["columns"], detail["sample"]["rows"][0], strict=True))
    assert isinstance(row["order_id"], int) and isinstance(row["total"], str) and "T" in row["ordered_at"]
    again = (await client.get("/api/catalog/tables/sample.orders", headers=admin)).json()
    assert again == detail  # cached per run


async def test_detail_of_unreadable_equals_missing(client, admin_token, auth, served):
    _, me = await viewer(client, admin_token)
    hidden = err(await client.get("/api/catalog/tables/hr.salaries", headers=me), 404, "table_not_found")
    missing = err(await client.get("/api/catalog/tables/hr.nothing", headers=me), 404, "table_not_found")
    assert hidden["message"].replace("hr.salaries", "X") == missing["message"].replace("hr.nothing", "X")
    assert "GET /api/catalog/tables" in hidden["hint"]
    err(await client.get("/api/catalog/tables"), 401, "not_authenticated")


async def test_catalog_loading_is_a_clear_503(client, admin_token, auth):
    serving = client.app.state.instance.serving
    serving.state.loaded = False
    try:
        body = err(await client.get("/api/catalog/tables", headers=auth(admin_token)), 503, "catalog_loading")
        assert "/api/health" in body["hint"]
    finally:
        serving.state.loaded = True


async def test_repeated_query_parameters_are_refused(client, admin_token, auth):
    body = err(await client.get("/api/catalog/tables?source=a&source=b", headers=auth(admin_token)), 400,
               "validation_failed")
    assert "source" in body["message"] and "once" in body["hint"]
