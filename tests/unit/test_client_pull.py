"""`agnes pull` logic against a fake server: only changed tables, atomic files, revoked tables removed."""

from __future__ import annotations

import io

import duckdb
import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agnes.client.api import AgnesApi, ClientError
from agnes.client.local import LocalFolder
from agnes.client.pull import pull


def parquet(rows: int) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table({"id": list(range(rows))}), sink)
    return sink.getvalue()


class FakeServer:
    """Manifest + downloads; `broken` tables send half their file and then drop the connection."""

    def __init__(self) -> None:
        self.files = {"s.a": parquet(3), "s.b": parquet(5)}
        self.hashes = {"s.a": "h-a1", "s.b": "h-b1"}
        self.broken: set[str] = set()
        self.unavailable: set[str] = set()  # listed with status "unavailable" and no hash
        self.downloads: list[str] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/data/manifest":
            items = [{"id": t, "rows": None, "size_bytes": len(self.files[t]), "extracted_at": None,
                      "hash": None if t in self.unavailable else self.hashes[t],
                      "status": "unavailable" if t in self.unavailable else "ok"} for t in sorted(self.files)]
            return httpx.Response(200, json={"items": items, "count": len(items)})
        table = request.url.path.split("/")[3]
        if request.headers.get("if-none-match") == f'"{self.hashes[table]}"':
            return httpx.Response(304)
        self.downloads.append(table)
        data = self.files[table]
        if table in self.broken:
            def cut():
                yield data[: len(data) // 2]
                raise httpx.ReadError("connection reset")
            return httpx.Response(200, stream=_Stream(cut()),
                                  headers={"ETag": f'"{self.hashes[table]}"'})
        return httpx.Response(200, content=data, headers={"ETag": f'"{self.hashes[table]}"'})


class _Stream(httpx.SyncByteStream):
    def __init__(self, chunks):
        self.chunks = chunks

    def __iter__(self):
        yield from self.chunks


@pytest.fixture
def server():
    return FakeServer()


def api(server: FakeServer) -> AgnesApi:
    return AgnesApi("http://agnes.test", "t", transport=httpx.MockTransport(server.handler))


def count(folder: LocalFolder, table: str) -> int:
    con = duckdb.connect(str(folder.root / "agnes.duckdb"), read_only=True)
    try:
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        con.close()


def test_pull_downloads_only_what_changed_and_removes_what_was_revoked(server, tmp_path):
    folder = LocalFolder(tmp_path / "data")
    first = pull(api(server), folder)
    assert first.downloaded == ["s.a", "s.b"] and not first.failed
    assert count(folder, "s.a") == 3 and count(folder, "b") == 5  # bare name while unique
    again = pull(api(server), folder)
    assert again.downloaded == [] and again.current == ["s.a", "s.b"] and server.downloads == ["s.a", "s.b"]
    server.files["s.a"], server.hashes["s.a"] = parquet(7), "h-a2"
    del server.files["s.b"]  # the grant was revoked
    third = pull(api(server), folder)
    assert third.downloaded == ["s.a"] and third.removed == ["s.b"]
    assert count(folder, "s.a") == 7 and not folder.file_for("s.b").exists()
    with pytest.raises(duckdb.CatalogException):
        count(folder, "s.b")


def test_a_failed_download_keeps_the_old_file_and_leaves_nothing_behind(server, tmp_path):
    folder = LocalFolder(tmp_path / "data")
    pull(api(server), folder)
    before = folder.file_for("s.a").read_bytes()
    server.files["s.a"], server.hashes["s.a"] = parquet(1000), "h-a2"
    server.broken.add("s.a")
    report = pull(api(server), folder)
    assert "s.a" in report.failed and folder.file_for("s.a").read_bytes() == before
    assert folder.leftovers() == [] and count(folder, "s.a") == 3
    assert folder.load().tables["s.a"].hash == "h-a1"  # still the old version: the next pull retries
    server.broken.clear()
    assert pull(api(server), folder).downloaded == ["s.a"] and count(folder, "s.a") == 1000


def test_truncated_but_complete_looking_download_is_refused(tmp_path):
    folder = LocalFolder(tmp_path / "data")
    with pytest.raises(ValueError, match="not valid Parquet"):
        folder.write_atomically("s.t", [parquet(10)[:-20]])
    assert not folder.file_for("s.t").exists() and folder.leftovers() == []


def test_a_table_unavailable_on_the_server_keeps_its_local_copy(server, tmp_path):
    folder = LocalFolder(tmp_path / "data")
    pull(api(server), folder)
    server.unavailable.add("s.b")
    server.hashes["s.b"] = "h-b2"
    report = pull(api(server), folder)
    assert report.removed == [] and report.unavailable == ["s.b"] and not report.failed
    assert folder.file_for("s.b").exists() and count(folder, "s.b") == 5
    assert server.downloads == ["s.a", "s.b"]  # nothing fetched for it
    named = pull(api(server), folder, ["s.b"])  # asked for by name: reported, still kept
    assert "cannot be read" in named.failed["s.b"] and count(folder, "s.b") == 5
    server.unavailable.clear()
    assert pull(api(server), folder).downloaded == ["s.b"]


def test_pull_named_tables_only(server, tmp_path):
    folder = LocalFolder(tmp_path / "data")
    report = pull(api(server), folder, ["s.b"])
    assert report.downloaded == ["s.b"] and server.downloads == ["s.b"] and not folder.file_for("s.a").exists()
    with pytest.raises(ClientError) as info:
        pull(api(server), folder, ["s.nope"])
    assert info.value.code == "table_not_found" and "agnes catalog" in info.value.hint
