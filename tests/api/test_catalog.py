"""GET /api/catalog/tables[/{id}]: readable tables only, filters, descriptions, stats and samples."""

from __future__ import annotations

from tests.api.test_grants import err, viewer


async def test_list_shape_filters_and_admin_descriptions(client, admin_token, auth, served):
    admin = auth(admin_token)
    page = (await client.get("/api/catalog/tables", headers=admin)).json()
    assert page["count"] == len(page["tables"]) == 5
    orders = next(t for t in page["tables"] if t["id"] == "sample.orders")
    assert set(orders) == {"id", "source", "name", "qualified_name", "description", "rows", "size_bytes",
                           "extracted_at", "query_mode", "columns", "status", "bare_name", "collides_with"}
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


def resp_text(body) -> str:
    import json

    return json.dumps(body)


async def test_name_collisions_are_shown_and_never_name_unreadable_tables(client, admin_token, auth):
    """`orders` exists in sample, shop and crm: no source owns the bare name. Each table says so, and names
    only the colliding tables the caller may read."""
    from tests.serving_helpers import load_sources

    await load_sources(client, admin_token, csv={"shop": {"orders.csv": b"id,total\n1,5\n2,7\n"},
                                                 "crm": {"orders.csv": b"id\n9\n", "leads.csv": b"id\n1\n2\n3\n"}})
    admin = auth(admin_token)

    async def tables(headers):
        resp = await client.get("/api/catalog/tables", headers=headers)
        assert resp.status_code == 200, resp.text
        return {t["id"]: (t["bare_name"], t["collides_with"]) for t in resp.json()["tables"]}, resp.text

    seen, _ = await tables(admin)
    assert seen["sample.orders"] == (None, ["crm.orders", "shop.orders"])
    assert seen["shop.orders"] == (None, ["crm.orders", "sample.orders"])
    assert seen["crm.leads"] == ('"leads"', []) and seen["sample.customers"] == ('"customers"', [])
    detail = (await client.get("/api/catalog/tables/crm.orders", headers=admin)).json()
    assert (detail["bare_name"], detail["collides_with"]) == (None, ["sample.orders", "shop.orders"])

    uid, me = await viewer(client, admin_token)
    for target in ("shop.*", "crm.*"):
        resp = await client.post("/api/admin/grants", json={"user_id": uid, "target": target}, headers=admin)
        assert resp.status_code == 200, resp.text
    seen, text = await tables(me)
    assert seen == {"shop.orders": (None, ["crm.orders"]), "crm.orders": (None, ["shop.orders"]),
                    "crm.leads": ('"leads"', [])}
    assert "sample" not in text  # the unreadable sample.orders is never named
    detail = (await client.get("/api/catalog/tables/shop.orders", headers=me)).json()
    assert (detail["bare_name"], detail["collides_with"]) == (None, ["crm.orders"])
    assert "sample.orders" not in resp_text(detail)

    # What the catalog says is what SQL does: the bare name works only where bare_name is set.
    ok = await client.post("/api/query", json={"sql": 'SELECT count(*) AS n FROM "leads"'}, headers=me)
    assert ok.status_code == 200 and ok.json()["rows"] == [[3]], ok.text
    bare = await client.post("/api/query", json={"sql": "SELECT * FROM orders"}, headers=me)
    assert bare.status_code >= 400 and "sample.orders" not in bare.text, bare.text
    qualified = await client.post("/api/query", json={"sql": 'SELECT count(*) FROM "shop"."orders"'}, headers=me)
    assert qualified.status_code == 200 and qualified.json()["rows"] == [[2]], qualified.text

    # A user reading only shop: the name still collides (bare `orders` does not work for them either),
    # but none of the other tables is named.
    resp = await client.request("DELETE", "/api/admin/grants", json={"user_id": uid, "target": "crm.*"},
                                headers=admin)
    assert resp.status_code == 204, resp.text
    seen, text = await tables(me)
    assert seen == {"shop.orders": (None, [])}
    assert "crm" not in text and "sample" not in text, text
