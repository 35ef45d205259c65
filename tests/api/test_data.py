"""Manifest and Parquet downloads: content hashes, ETag/304, partitions, base tables, roles, remote tables."""

from __future__ import annotations

import asyncio
import io

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

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
    assert set(orders) == {"id", "rows", "size_bytes", "extracted_at", "hash", "status"}
    assert {i["status"] for i in items.values()} == {"ok"}
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
    assert rows["rows"] == [[6]]  # sum() of integers is HUGEINT: an exact JSON number
    detail = (await client.get(f"/api/catalog/tables/{table_id}", headers=h)).json()
    assert detail["query_mode"] == "remote" and "remote" in detail["stats_note"]
    assert detail["sample"]["rows"] == [[1], [2], [3]]


class HoldCounter:
    """Counts the run holds the download service takes and releases."""

    def __init__(self, monkeypatch) -> None:
        from agnes.services import data as data_service

        self.taken, self.released = [], []
        real_hold, real_release = data_service.hold_run, data_service.release_run
        monkeypatch.setattr(data_service, "hold_run", lambda run: self.taken.append(real_hold(run)) or self.taken[-1])
        monkeypatch.setattr(data_service, "release_run", lambda fd: (self.released.append(fd), real_release(fd)))

    @property
    def outstanding(self) -> int:
        return len(self.taken) - len(self.released)


async def test_failed_audit_releases_the_hold_and_the_reader(client, admin_token, auth, served, monkeypatch):
    from agnes.services import data as data_service

    holds = HoldCounter(monkeypatch)

    async def broken(*args, **kwargs):
        raise RuntimeError("audit log unavailable")

    monkeypatch.setattr(data_service.audit, "record", broken)
    resp = await client.get("/api/data/sample.orders/download", headers=auth(admin_token))
    assert resp.status_code == 500
    assert holds.taken and holds.outstanding == 0
    monkeypatch.undo()
    assert (await client.get("/api/data/sample.orders/download", headers=auth(admin_token))).status_code == 200


async def test_a_download_nobody_streams_still_releases_its_hold(client, admin_token, auth, served, app, monkeypatch):
    """The client went away before Litestar iterated the body: collecting it releases the run."""
    import gc

    from agnes.models import User
    from agnes.services import data as data_service

    holds = HoldCounter(monkeypatch)
    admin = User(id=1, email="admin@example.com", role="admin", active=True, created_at="", updated_at="")
    instance = app.state.instance
    found = await data_service.open_download(instance, admin, "sample.orders")
    assert holds.outstanding == 1
    del found
    gc.collect()
    assert holds.outstanding == 0

    found = await data_service.open_download(instance, admin, "sample.orders")  # partly read, then closed
    body = found.body
    assert len(await body.__anext__()) > 0
    await body.aclose()
    assert holds.outstanding == 0 and body.released
    with pytest.raises(StopAsyncIteration):
        await body.__anext__()

    found = await data_service.open_download(instance, admin, "sample.orders")  # a cancelled reader
    body = found.body

    async def read_all():
        async for _ in body:
            await asyncio.sleep(0)

    task = asyncio.create_task(read_all())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(200):
        if holds.outstanding == 0:
            break
        await asyncio.sleep(0.01)
    assert holds.outstanding == 0


async def test_unreadable_data_is_listed_unavailable_not_dropped(client, admin_token, auth, served, monkeypatch):
    """A client treats a table missing from the manifest as revoked and deletes its copy: a table
    whose data cannot be read right now must stay listed, with no hash."""
    from agnes.engine.export import ExportError
    from agnes.services import data as data_service

    real_locate = data_service.locate

    def locate_but_orders(run, name):
        if name == "orders":
            raise ExportError("gone for a moment")
        return real_locate(run, name)

    monkeypatch.setattr(data_service, "locate", locate_but_orders)
    body = (await client.get("/api/data/manifest", headers=auth(admin_token))).json()
    items = {i["id"]: i for i in body["items"]}
    assert set(items) == served and body["count"] == len(served)
    assert items["sample.orders"]["status"] == "unavailable" and items["sample.orders"]["hash"] is None
    assert items["sample.orders"]["rows"] == 10_000
    assert items["sample.customers"]["status"] == "ok" and len(items["sample.customers"]["hash"]) == 64
    err(await client.get("/api/data/sample.orders/download", headers=auth(admin_token)), 503, "data_unavailable")


async def test_partitioned_table_download_over_http_with_etag(client, admin_token, auth, served, tmp_path):
    """A table stored as several part files comes out as one Parquet file, with a (weak) ETag
    that equals the manifest hash and turns a repeat into 304."""
    from agnes.control import publications
    from agnes.engine import publish as pub
    from agnes.extract.writer import ExtractWriter
    from tests.serving_helpers import wait_served

    instance = client.app.state.instance
    parts = []
    for i in range(3):
        parts.append(tmp_path / f"p{i}.parquet")
        pq.write_table(pa.table({"id": list(range(i * 1000, (i + 1) * 1000)), "part": [i] * 1000}), parts[-1])
    staging = pub.new_staging_dir(instance.settings.extracts_dir, "parts")
    with ExtractWriter(staging) as writer:
        writer.add_parquet_files("events", parts, partitioned=True)
    run = pub.publish(instance.settings.extracts_dir, "parts", staging).path
    assert len(list((run / "data" / "events").glob("*.parquet"))) == 3

    async def record() -> None:
        async with instance.control.transaction() as conn:
            await conn.execute("INSERT INTO sources (name, type, created_at, updated_at) "
                               "VALUES ('parts', 'external', '', '')")
            await publications.record(conn, source="parts", run_id=run.name, previous_run_id=None, extracted_at=None)

    await asyncio.to_thread(client.blocking_portal.call, record)
    await wait_served(client, {"parts.events"})
    h = auth(admin_token)
    entry = next(i for i in (await client.get("/api/data/manifest", headers=h)).json()["items"]
                 if i["id"] == "parts.events")
    got = await client.get("/api/data/parts.events/download", headers=h)
    assert got.status_code == 200, got.text
    assert got.headers["etag"] == f'W/"{entry["hash"]}"'  # re-encoded: a weak tag, no Content-Length
    assert "content-length" not in got.headers or int(got.headers["content-length"]) == len(got.content)
    table = pq.read_table(io.BytesIO(got.content))
    assert table.num_rows == 3000 and sorted(table.column("id").to_pylist()) == list(range(3000))
    same = await client.get("/api/data/parts.events/download", headers={**h, "If-None-Match": got.headers["etag"]})
    assert same.status_code == 304 and same.content == b"" and same.headers["etag"] == got.headers["etag"]
    bare = await client.get("/api/data/parts.events/download", headers={**h, "If-None-Match": f'"{entry["hash"]}"'})
    assert bare.status_code == 304
