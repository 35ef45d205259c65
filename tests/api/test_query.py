"""POST /api/query through the full app: JSON types, Arrow, CSV, caps, errors, permissions."""

from __future__ import annotations

import asyncio
import io

import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest
from litestar import Litestar

from agnes.app import create_app
from tests.api.test_grants import err, viewer
from tests.serving_helpers import SECRET, threaded_client

ARROW = "application/vnd.apache.arrow.stream"
HEAVY = "SELECT count(*) FROM range(3000000) a, range(3000000) b WHERE a.range * b.range = 7"


@pytest.fixture
def app(make_settings) -> Litestar:
    return create_app(make_settings(AGNES_QUERY_MAX_ROWS="1000", AGNES_QUERY_STREAM_MAX_ROWS="5000",
                                    AGNES_QUERY_TIMEOUT="1", AGNES_QUERY_STREAM_TIMEOUT="2",
                                    AGNES_QUERY_CONCURRENCY="2"))


async def query(client, headers, sql, accept=None, **extra):
    h = {**headers, **({"Accept": accept} if accept else {})}
    return await client.post("/api/query", json={"sql": sql, **extra}, headers=h)


async def test_json_keeps_value_types(client, admin_token, auth, served):
    resp = await query(client, auth(admin_token), "SELECT order_id, total, ordered_at, shipped_on, is_gift, status, "
                       "1.5::DOUBLE AS f, 'nan'::DOUBLE AS nan, NULL AS nothing, [1, 2] AS l, {'a': 1} AS s "
                       "FROM sample.orders WHERE order_id = 2")
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json", resp.text
    body = resp.json()
    assert set(body) == {"columns", "rows", "row_count", "truncated", "elapsed_ms"}
    assert body["columns"][:3] == [{"name": "order_id", "type": "BIGINT"}, {"name": "total", "type": "DECIMAL(12,2)"},
                                   {"name": "ordered_at", "type": "TIMESTAMP"}]
    assert body["rows"] == [[2, "642.86", "2024-01-01T05:33:22", None, False, "pending", 1.5, None, None, [1, 2],
                             {"a": 1}]]
    assert body["row_count"] == 1 and body["truncated"] is False and body["elapsed_ms"] > 0
    dated = (await query(client, auth(admin_token), "SELECT DATE '2024-02-29' AS d, "
                         "TIMESTAMPTZ '2024-01-01 12:00:00+00' AS tz")).json()
    assert dated["rows"] == [["2024-02-29", "2024-01-01T12:00:00Z"]]


async def test_limits_and_truncation(client, admin_token, auth, served):
    h = auth(admin_token)
    body = (await query(client, h, "SELECT * FROM sample.orders", limit=10)).json()
    assert body["row_count"] == 10 and body["truncated"] is True
    capped = (await query(client, h, "SELECT * FROM sample.orders", limit=10**6)).json()
    assert capped["row_count"] == 1000 and capped["truncated"] is True  # AGNES_QUERY_MAX_ROWS
    exact = (await query(client, h, "SELECT * FROM sample.products")).json()
    assert exact["row_count"] == 200 and exact["truncated"] is False
    bare = (await query(client, h, "SELECT count(*) AS n FROM orders")).json()  # bare name while unique
    assert bare["rows"] == [[10_000]]


async def test_arrow_stream(client, admin_token, auth, served):
    h = auth(admin_token)
    resp = await query(client, h, "SELECT * FROM sample.orders ORDER BY order_id", accept=ARROW)
    assert resp.status_code == 200 and resp.headers["content-type"] == ARROW, resp.text
    assert resp.headers["x-agnes-max-rows"] == "5000"
    reader = pa.ipc.open_stream(resp.content)
    table = reader.read_all()
    assert table.num_rows == 5000 and table.schema.field("total").type == pa.decimal128(12, 2)
    marks = []
    reader = pa.ipc.open_stream(resp.content)
    while True:
        try:
            marks.append(reader.read_next_batch_with_custom_metadata()[1])
        except StopIteration:
            break
    assert marks[-1] is not None and marks[-1][b"agnes.truncated"] == b"true"  # the stream cap cut it
    small = await query(client, h, "SELECT * FROM sample.products", accept=ARROW, limit=50)
    assert small.headers["x-agnes-max-rows"] == "50"
    assert pa.ipc.open_stream(small.content).read_all().num_rows == 50
    full = pa.ipc.open_stream((await query(client, h, "SELECT * FROM sample.products", accept=ARROW)).content)
    assert full.read_all().num_rows == 200


async def test_csv_stream(client, admin_token, auth, served):
    h = auth(admin_token)
    resp = await query(client, h, "SELECT product_id, sku, unit_price FROM sample.products ORDER BY 1",
                       accept="text/csv")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv"), resp.text
    assert resp.text.splitlines()[0] == '"product_id","sku","unit_price"'
    assert pa_csv.read_csv(io.BytesIO(resp.content)).num_rows == 200
    empty = await query(client, h, "SELECT * FROM sample.products WHERE false", accept="text/csv")
    assert empty.text.splitlines() == ['"product_id","sku","name","category","unit_price","weight_kg",'
                                       '"launched_on","discontinued"']
    body = err(await query(client, h, "SELECT [1, 2] AS l, 1 AS n", accept="text/csv"), 400, "format_unsupported")
    assert "l (list" in body["message"] and "to_json" in body["hint"]
    body = err(await query(client, h, "SELECT 1", accept="application/xml"), 406, "not_acceptable")
    assert "text/csv" in body["hint"]
    assert (await query(client, h, "SELECT 1", accept="text/*")).headers["content-type"].startswith("text/csv")
    assert (await query(client, h, "SELECT 1", accept="*/*")).headers["content-type"] == "application/json"


async def test_refusals_have_status_code_and_hint(client, admin_token, auth, served, data_dir):
    h = auth(admin_token)
    cases = [
        ("SELEC 1", 400, "query_syntax"),
        ("SELECT 1; SELECT 2", 400, "multiple_statements"),
        ("DROP TABLE sample.orders", 403, "query_not_allowed"),
        ("SELECT * FROM read_csv('/etc/passwd')", 403, "function_not_allowed"),
        ("SELECT * FROM sample.nothing", 404, "table_not_found"),
        ("SELECT no_such_column FROM sample.orders", 422, "query_failed"),
        (HEAVY, 408, "query_timeout"),
    ]
    for sql, status, code in cases:
        body = err(await query(client, h, sql), status, code)
        assert str(data_dir) not in body["message"] and "extracts" not in body["message"], body  # no paths
    assert "LIMIT" in err(await query(client, h, HEAVY, accept=ARROW), 408, "query_timeout")["hint"]
    err(await client.post("/api/query", json={"sql": ""}, headers=h), 400, "validation_failed")
    err(await client.post("/api/query", json={"sql": "SELECT 1", "rows": 5}, headers=h), 400, "validation_failed")
    err(await client.post("/api/query?format=csv", json={"sql": "SELECT 1"}, headers=h), 400, "validation_failed")
    err(await client.post("/api/query", json={"sql": "SELECT 1"}), 401, "not_authenticated")


async def test_busy_answers_503_with_retry_after(client, admin_token, auth, served):
    h = auth(admin_token)
    client.app.state.instance.query.queue_size = 0  # no waiting room: the third query is refused at once
    sync = threaded_client(client)
    results = await asyncio.gather(*(asyncio.to_thread(sync.post, "/api/query", json={"sql": HEAVY}, headers=h)
                                     for _ in range(3)))
    busy = [r for r in results if r.status_code == 503]
    assert len(busy) == 1 and int(busy[0].headers["retry-after"]) >= 1
    assert busy[0].json()["error"]["code"] == "query_busy"
    assert sorted(r.status_code for r in results) == [408, 408, 503]


async def test_viewers_query_only_what_they_may_read(client, admin_token, auth, served):
    uid, me = await viewer(client, admin_token)
    await client.post("/api/admin/grants", json={"user_id": uid, "target": "sample.*"}, headers=auth(admin_token))
    ok = await query(client, me, "SELECT count(*) FROM sample.orders o JOIN sample.customers c USING (customer_id)")
    assert ok.status_code == 200 and ok.json()["rows"] == [[10_000]]
    for sql in ["SELECT * FROM hr.salaries", "SELECT * FROM salaries",
                "SELECT o.* FROM sample.orders o JOIN hr.vault v ON o.order_id = v.id"]:
        for accept in (None, ARROW, "text/csv"):
            resp = await query(client, me, sql, accept=accept)
            body = err(resp, 404, "table_not_found")
            assert SECRET not in resp.text and "GET /api/catalog/tables" in body["hint"]
