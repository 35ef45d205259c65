"""Manifest and Parquet downloads: content hashes, ETag/304, partitions, base tables, roles, remote tables."""

from __future__ import annotations

import io

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from agnes.engine.export import locate, parquet_chunks
from tests.api.test_grants import err, viewer
from tests.serving_helpers import wait_job, wait_served


async def test_manifest_and_download(client, admin_token, auth, served, app):
    h = auth(admin_token)
    resp = await client.get("/api/data/manifest", headers=h)
    assert resp.status_code == 200, resp.text
    items = {i["id"]: i for i in resp.json()["items"]}
    assert set(items) == served and resp.json()["count"] == len(served)
    orders = items["sample.orders"]
    assert set(orders) == {"id", "rows", "size_bytes", "extracted_at", "hash"}
    assert orders["rows"] == 10_000 and len(orders["hash"]) == 64 and orders["extracted_at"].endswith("Z")

    got = await client.get("/api/data/sample.orders/download", headers=h)
    assert got.status_code == 200, got.text
    assert got.headers["etag"] == f'"{orders["hash"]}"' and got.headers["content-type"] == "application/vnd.apache.parquet"
    assert int(got.headers["content-length"]) == len(got.content) == orders["size_bytes"]
    assert 'filename="sample.orders.parquet"' in got.headers["content-disposition"]
    assert pq.read_table(io.BytesIO(got.content)).num_rows == 10_000
    same = await client.get("/api/data/sample.orders/download", headers={**h, "If-None-Match": got.headers["etag"]})
    assert same.status_code == 304 and same.content == b"" and same.headers["etag"] == got.headers["etag"]
    other = await client.get("/api/data/sample.orders/download", headers={**h, "If-None-Match": '"abc", W/"def"'})
    assert other.status_code == 200
    async with app.state.instance.control.read() as conn:
        async with conn.execute("SELECT count(*) FROM audit_log WHERE action = 'table_downloaded'") as cur:
            assert (await cur.fetchone())[0] == 2  # the 304 is not a download

    # The sample connector writes identical data: a re-sync keeps every hash (nothing to pull again).
    job = (await client.post("/api/sync/trigger", json={"source": "sample"}, headers=h)).json()
    await wait_job(client, h, job["job_id"])
    await wait_served(client, {"sample.orders"})
    again = {i["id"]: i["hash"] for i in (await client.get("/api/data/manifest", headers=h)).json()["items"]}
    assert again == {i: v["hash"] for i, v in items.items()}


async def test_roles_and_permissions(client, admin_token, auth, served):
    _, viewer_h = await viewer(client, admin_token)
    err(await client.get("/api/data/manifest", headers=viewer_h), 403, "forbidden")
    err(await client.get("/api/data/sample.orders/download", headers=viewer_h), 403, "forbidden")
    uid, analyst = await viewer(client, admin_token, "analyst@example.com", "analyst")
    assert (await client.get("/api/data/manifest", headers=analyst)).json() == {"items": [], "count": 0}
    await client.post("/api/admin/grants", json={"user_id": uid, "target": "sample.orders"}, headers=auth(admin_token))
    assert [i["id"] for i in (await client.get("/api/data/manifest", headers=analyst)).json()["items"]] == [
        "sample.orders"]
    hidden = err(await client.get("/api/data/hr.salaries/download", headers=analyst), 404, "table_not_found")
    missing = err(await client.get("/api/data/hr.nope/download", headers=analyst), 404, "table_not_found")
    assert hidden["message"].replace("hr.salaries", "?") == missing["message"].replace("hr.nope", "?")
    assert "/api/data/manifest" in hidden["hint"]
    assert (await client.get("/api/data/sample.orders/download", headers=analyst)).status_code == 200
    err(await client.get("/api/data/manifest?x=1", headers=analyst), 400, "validation_failed")


def test_partitioned_and_base_tables_become_one_parquet_file(tmp_path):
    run = tmp_path / "run"
    (run / "data" / "events").mkdir(parents=True)
    for i in range(3):
        pq.write_table(pa.table({"id": list(range(i * 150_000, (i + 1) * 150_000)), "part": [i] * 150_000}),
                       run / "data" / "events" / f"part-{i:05d}.parquet")
    con = duckdb.connect(str(run / "extract.duckdb"))
    con.execute("CREATE TABLE _meta (table_name VARCHAR)")
    con.execute("CREATE TABLE people AS SELECT range AS id, 'p' || range AS name FROM range(250000)")
    con.close()
    for name, rows in (("events", 450_000), ("people", 250_000)):
        data = locate(run, name)
        chunks = list(parquet_chunks(data))
        assert chunks[0] == b"" and len(chunks) > 3  # streamed in pieces, one row group per batch
        table = pq.read_table(io.BytesIO(b"".join(chunks)))
        assert table.num_rows == rows and pq.ParquetFile(io.BytesIO(b"".join(chunks))).num_row_groups >= 2
    assert pq.read_table(io.BytesIO(b"".join(parquet_chunks(locate(run, "events"))))).column("id").to_pylist()[
        :3] == [0, 1, 2]


async def test_remote_tables_are_queried_not_downloaded(client, admin_token, auth, tmp_path):
    from tests.serving_helpers import publish_remote_source

    h = auth(admin_token)
    table_id = await publish_remote_source(client, "lite", tmp_path)
    assert (await client.get("/api/data/manifest", headers=h)).json()["count"] == 0
    body = err(await client.get(f"/api/data/{table_id}/download", headers=h), 409, "table_is_remote")
    assert "POST /api/query" in body["hint"] and table_id in body["hint"]
    rows = (await client.post("/api/query", json={"sql": f"SELECT sum(v) FROM {table_id}"}, headers=h)).json()
    assert rows["rows"] == [[6]]
    detail = (await client.get(f"/api/catalog/tables/{table_id}", headers=h)).json()
    assert detail["query_mode"] == "remote" and "remote" in detail["stats_note"]
    assert detail["sample"]["rows"] == [[1], [2], [3]]
