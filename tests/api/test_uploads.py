"""POST /api/admin/uploads?source=NAME: checked in full, staged atomically, published by the next sync."""

from __future__ import annotations

import pytest
from litestar.testing import AsyncTestClient

from agnes.app import create_app
from tests.api.source_helpers import audit_rows
from tests.conftest import bootstrap
from tests.serving_helpers import wait_job, wait_served

BAD_FILES = [
    ("empty.csv", b"", "empty.csv: the file is empty"),
    ("blank.csv", b"\n \n", "blank.csv: the file is empty"),
    ("book.csv", b"PK\x03\x04" + b"\x00" * 40, "book.csv: this is a binary file"),
    ("nul.csv", b"a,b\n1,\x002\n", "nul.csv: line 2: NUL byte"),
    ("latin.csv", "name,city\nJosé,Zürich\n".encode("cp1252"), "latin.csv: line 2: not valid UTF-8"),
    ("utf16.csv", "a,b\n1,2\n".encode("utf-16"), "utf16.csv: the file is UTF-16-encoded"),
    ("dupes.csv", b"id,Name,name\n1,a,b\n", "dupes.csv: line 1: duplicate column name 'name'"),
    ("ragged.csv", b"a,b,c\n1,2,3\n4,5\n6,7,8\n", "ragged.csv: line 3: 2 fields but the header has 3"),
    ("quote.csv", b'a,b\n1,"open\n2,3\n', "quote.csv: line 2: a quoted field"),
    # DuckDB would silently call an unnamed column `column1`
    ("no_name.csv", b"a,,b\n1,2,3\n", "no_name.csv: line 1: column 2 of 3 has an empty name in the header"),
    ("trailing.csv", b"a;b;\n1;2;3\n", "trailing.csv: line 1: column 3 of 3 (the last one: a trailing delimiter?) "
                                        "has an empty name"),
]


@pytest.fixture
async def h(client, admin_token, auth):
    headers = auth(admin_token)
    assert (await client.post("/api/admin/configure", json={"data_source": "csv"}, headers=headers)).status_code == 200
    return headers


def tree(folder):
    return sorted((str(p.relative_to(folder)), p.is_symlink() and str(p.readlink()),
                   p.is_file() and not p.is_symlink() and p.read_bytes()) for p in folder.rglob("*"))


async def upload(client, h, name, content, source="csv"):
    return await client.post(f"/api/admin/uploads?source={source}", headers=h, files={"file": (name, content)})


async def test_upload_stages_a_table_with_types(client, h, app, data_dir):
    resp = await upload(client, h, "Orders 2024.csv",
                        b"order_id;ordered_on;total;paid\n1;2024-01-02;10.5;true\n2;2024-01-03;7;false\n")
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert (body["source"], body["table"], body["file"], body["original_name"], body["rows"], body["replaced"]) == (
        "csv", "orders_2024", "orders_2024.csv", "Orders 2024.csv", 2, False)
    assert body["columns"] == [{"name": "order_id", "type": "BIGINT"}, {"name": "ordered_on", "type": "DATE"},
                               {"name": "total", "type": "DOUBLE"}, {"name": "paid", "type": "BOOLEAN"}]
    assert body["size_bytes"] == (data_dir / "uploads" / "csv" / "orders_2024.csv").stat().st_size
    assert "/api/sync/trigger" in body["next_step"]
    assert [a for a, _ in await audit_rows(app, "csv_")] == ["csv_uploaded"]
    registered = (await client.post("/api/admin/discover-and-register?source=csv", headers=h)).json()
    assert [t["id"] for t in registered["sources"][0]["registered"]] == ["csv.orders_2024"]


async def test_every_bad_file_kind_is_refused_naming_file_line_and_problem(client, h, data_dir):
    published = data_dir / "extracts" / "csv"
    (published / "runs" / "r1" / "data").mkdir(parents=True)
    (published / "runs" / "r1" / "data" / "orders.parquet").write_bytes(b"PAR1 old data")
    (published / "current").symlink_to(published / "runs" / "r1")
    assert (await upload(client, h, "orders.csv", b"id\n1\n")).status_code == 201
    staged = data_dir / "uploads" / "csv"
    before_staged, before_published = tree(staged), tree(published)
    for name, content, expected in BAD_FILES:
        resp = await upload(client, h, name, content)
        assert resp.status_code == 400, (name, resp.text)
        err = resp.json()["error"]
        assert err["code"] == "invalid_csv" and err["message"].startswith(expected), (name, err)
        assert "upload it again" in err["hint"]
    bad_orders = await upload(client, h, "orders.csv", b"id,x\n1\n")  # a bad re-upload keeps the good file
    assert bad_orders.status_code == 400 and "orders.csv: line 2" in bad_orders.json()["error"]["message"]
    assert tree(staged) == before_staged and tree(published) == before_published


async def test_reupload_replaces_atomically(client, h, data_dir):
    assert (await upload(client, h, "customers.csv", b"id,name\n1,Ada\n")).json()["replaced"] is False
    second = await upload(client, h, "Customers.CSV", b"id,name\n1,Ada\n2,Alan\n")
    assert second.status_code == 201 and second.json()["replaced"] is True and second.json()["rows"] == 2
    folder = data_dir / "uploads" / "csv"
    assert sorted(p.name for p in folder.iterdir()) == [".customers.name", ".lock", "customers.csv"]  # no temp files
    assert (folder / "customers.csv").read_bytes() == b"id,name\n1,Ada\n2,Alan\n"
    assert (folder / ".customers.name").read_text() == "Customers.CSV\n"  # the name it was uploaded under


async def test_a_different_name_for_the_same_table_is_reported_and_the_original_name_kept(client, h, app, data_dir):
    first = (await upload(client, h, "Sales 2024.csv", b"id,total\n1,10\n")).json()
    assert (first["table"], first["original_name"], first["replaced"], first["warnings"]) == (
        "sales_2024", "Sales 2024.csv", False, [])
    same = (await upload(client, h, "Sales 2024.csv", b"id,total\n1,11\n")).json()
    assert same["replaced"] is True and same["warnings"] == []  # the same file again: nothing to report
    other = (await upload(client, h, "sales-2024.csv", b"id,total\n9,99\n")).json()
    assert other["replaced"] is True and len(other["warnings"]) == 1
    warning = other["warnings"][0]
    assert "'sales-2024.csv' replaced the file uploaded earlier as 'Sales 2024.csv'" in warning
    assert "'sales_2024'" in warning and "rename one file" in warning
    assert '"replaced_file":"Sales 2024.csv"' in [d for _, d in await audit_rows(app, "csv_")][-1]
    # the registry's native id and description are the name the published file was uploaded under
    job = (await client.post("/api/sync/trigger", json={"source": "csv"}, headers=h)).json()
    assert (await wait_job(client, h, job["job_id"]))["status"] == "succeeded"
    table = (await client.get("/api/admin/tables/csv.sales_2024", headers=h)).json()
    assert (table["native_id"], table["description"]) == ("sales-2024.csv", "CSV file sales-2024.csv")


async def test_late_type_change_and_header_only_files_are_fine(client, h):
    late = b"id\n" + b"".join(f"{i}\n".encode() for i in range(30000)) + b"x9\n"
    resp = await upload(client, h, "late.csv", late)
    assert resp.status_code == 201 and resp.json()["columns"] == [{"name": "id", "type": "VARCHAR"}]
    assert resp.json()["rows"] == 30001
    header_only = await upload(client, h, "empty_table.csv", b"a,b\n")
    assert header_only.status_code == 201 and header_only.json()["rows"] == 0


async def test_wrong_source_missing_source_and_missing_name(client, h):
    assert (await client.post("/api/admin/configure", json={"data_source": "sample"}, headers=h)).status_code == 200
    cases = [
        (await upload(client, h, "a.csv", b"a\n1\n", source="sample"), 400, "wrong_source_type"),
        (await upload(client, h, "a.csv", b"a\n1\n", source="nope"), 404, "source_not_found"),
        (await upload(client, h, "???.csv", b"a\n1\n"), 400, "invalid_csv"),
        (await upload(client, h, "", b"a\n1\n"), 400, None),
        (await client.post("/api/admin/uploads", headers=h, files={"file": ("a.csv", b"a\n1\n")}), 400,
         "validation_failed"),
        (await client.post("/api/admin/uploads?source=csv", headers=h, json={"file": "a"}), 400, None),
    ]
    for resp, status, code in cases:
        assert resp.status_code == status, resp.text
        if code:
            assert resp.json()["error"]["code"] == code, resp.text


async def test_too_large_upload_is_413_with_a_hint(make_settings, data_dir):
    app = create_app(make_settings(AGNES_MAX_UPLOAD_MB="1"))
    async with AsyncTestClient(app=app) as client:
        h = {"Authorization": f"Bearer {await bootstrap(client, data_dir)}"}
        await client.post("/api/admin/configure", json={"data_source": "csv"}, headers=h)
        big = b"id,text\n" + b"1,abcdefghijklmnopqrstuvwxyz\n" * 50_000  # ~1.5 MB
        resp = await upload(client, h, "big.csv", big)
        assert resp.status_code == 413, resp.text
        err = resp.json()["error"]
        assert err["code"] == "payload_too_large" and "1 MB" in err["message"]
        assert "AGNES_MAX_UPLOAD_MB" in err["hint"]
        assert not any((data_dir / "uploads" / "csv").iterdir())
        small = await upload(client, h, "small.csv", b"id\n1\n")
        assert small.status_code == 201


async def test_a_reupload_changes_what_queries_see_only_at_the_next_sync(client, h):
    async def rows():
        resp = await client.post("/api/query", json={"sql": "SELECT id, total FROM csv.orders ORDER BY id"},
                                 headers=h)
        assert resp.status_code == 200, resp.text
        return resp.json()["rows"]

    async def sync():
        job = (await client.post("/api/sync/trigger", json={"source": "csv"}, headers=h)).json()
        assert (await wait_job(client, h, job["job_id"]))["status"] == "succeeded"
        await wait_served(client, {"csv.orders"})  # forces the serving catalog to pick up the publication

    assert (await upload(client, h, "orders.csv", b"id,total\n1,10\n2,20\n")).status_code == 201
    await sync()
    assert await rows() == [[1, 10], [2, 20]]
    replaced = await upload(client, h, "orders.csv", b"id,total\n3,30\n")
    assert replaced.status_code == 201 and replaced.json()["replaced"] is True
    await wait_served(client, {"csv.orders"})  # a refresh now would show new data if anything was published
    assert await rows() == [[1, 10], [2, 20]]  # staged, not published
    await sync()
    assert await rows() == [[3, 30]]
