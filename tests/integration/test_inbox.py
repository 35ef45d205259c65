"""Tier B: a producer writes inbox/<name>/ and READY last; the server publishes,
registers and serves it, or refuses it with REJECTED + a health error."""

from __future__ import annotations

from pathlib import Path

import duckdb
from contract_tests.fixtures import build_valid_extract

from agnes.engine.publish import current_run
from agnes.services.inbox import scan_inbox
from tests.api.test_sync import wait_final
from tests.serving_helpers import on_app


def _drop(inbox: Path, name: str, *, rows_off_by: int = 0) -> Path:
    folder = inbox / name
    build_valid_extract(folder)
    if rows_off_by:
        with duckdb.connect(str(folder / "extract.duckdb")) as con:
            con.execute("UPDATE _meta SET rows = rows + ? WHERE table_name = 'orders'", [rows_off_by])
    (folder / "READY").touch()  # last, as the contract says
    return folder


async def test_inbox_run_is_published_registered_and_served(client, app, admin_token, auth, data_dir: Path):
    instance = app.state.instance
    h = auth(admin_token)
    inbox = instance.settings.inbox_dir
    (inbox / "partner").mkdir(parents=True)
    build_valid_extract(inbox / "partner")
    assert await on_app(client, scan_inbox, instance) == []  # no READY yet: the producer is still writing
    (inbox / "partner" / "READY").touch()
    [job_id] = await on_app(client, scan_inbox, instance)
    job = await wait_final(client, h, job_id)
    assert job["status"] == "succeeded", job
    tables = {t["id"]: t for t in job["tables"]}
    assert {"partner.orders", "partner.customers", "partner.events"} <= set(tables), job["tables"]
    assert tables["partner.orders"]["status"] == "succeeded" and tables["partner.orders"]["rows"] == 3
    assert not (inbox / "partner" / "READY").exists()
    assert not (inbox / "partner" / "extract.duckdb").exists()  # moved, not copied
    sources = (await client.get("/api/admin/sources", headers=h)).json()
    partner = next(s for s in sources["items"] if s["name"] == "partner")
    assert partner["type"] == "external"
    await on_app(client, instance.serving.refresh, force=True)
    assert "partner.orders" in {t.id for t in instance.serving.catalog.tables()}
    rows = instance.serving.catalog.execute_readonly('SELECT count(*) FROM "partner"."orders"').to_pylist()
    assert rows == [{"count_star()": 3}]
    # A second run replaces the first atomically.
    _drop(inbox, "partner")
    [second] = await on_app(client, scan_inbox, instance)
    assert (await wait_final(client, h, second))["status"] == "succeeded"


async def test_invalid_inbox_run_is_rejected_and_old_data_keeps_serving(client, app, admin_token, auth):
    instance = app.state.instance
    h = auth(admin_token)
    inbox = instance.settings.inbox_dir
    _drop(inbox, "partner")
    [good] = await on_app(client, scan_inbox, instance)
    assert (await wait_final(client, h, good))["status"] == "succeeded"
    _drop(inbox, "partner", rows_off_by=5)
    [bad] = await on_app(client, scan_inbox, instance)
    job = await wait_final(client, h, bad)
    assert job["status"] == "failed" and "rows_mismatch" in (job["error"] or "")
    rejected = (inbox / "partner" / "REJECTED").read_text()
    assert "rows_mismatch" in rejected and "orders" in rejected
    assert "back in this folder" in rejected
    health = (await client.get("/api/health", headers=h)).json()
    assert any(e["code"] == "extract_invalid" and e["source"] == "partner" for e in health["errors"])
    await on_app(client, instance.serving.refresh, force=True)
    count = instance.serving.catalog.execute_readonly('SELECT count(*) AS n FROM "partner"."orders"').to_pylist()
    assert count == [{"n": 3}]  # the previous run keeps serving
    # The refused run is back in the folder for the producer to inspect, and it is not taken again.
    folder = inbox / "partner"
    assert (folder / "extract.duckdb").is_file() and (folder / "data" / "orders.parquet").is_file()
    assert (folder / "data" / "events").is_dir()
    assert not (folder / "READY").exists()
    assert await on_app(client, scan_inbox, instance) == [] and await on_app(client, scan_inbox, instance) == []
    with duckdb.connect(str(folder / "extract.duckdb")) as con:  # the producer inspects and fixes it
        assert con.execute("SELECT rows FROM _meta WHERE table_name = 'orders'").fetchone() == (8,)
        con.execute("UPDATE _meta SET rows = 3 WHERE table_name = 'orders'")
    (folder / "READY").touch()
    [fixed] = await on_app(client, scan_inbox, instance)
    assert (await wait_final(client, h, fixed))["status"] == "succeeded"
    assert not (folder / "REJECTED").exists() and not (folder / "extract.duckdb").exists()


async def test_ready_without_a_run_is_rejected_once(client, app, admin_token, auth):
    """READY alone (or a run that cannot be moved) is refused once, not retried as a failing job every tick."""
    instance = app.state.instance
    h = auth(admin_token)
    folder = instance.settings.inbox_dir / "partner"
    folder.mkdir(parents=True)
    (folder / "READY").touch()
    [job_id] = await on_app(client, scan_inbox, instance)
    job = await wait_final(client, h, job_id)
    assert job["status"] == "failed" and "READY but empty" in job["error"], job
    assert "REJECTED" in job["error"]
    rejected = (folder / "REJECTED").read_text()
    assert "READY but empty" in rejected and "extract.duckdb" in rejected
    assert not (folder / "READY").exists()
    assert await on_app(client, scan_inbox, instance) == []
    assert await on_app(client, scan_inbox, instance) == []
    health = (await client.get("/api/health", headers=h)).json()
    assert any(e["code"] == "extract_invalid" and e["source"] == "partner" for e in health["errors"])
    _drop(instance.settings.inbox_dir, "partner")  # the producer writes a real run, READY last
    [again] = await on_app(client, scan_inbox, instance)
    assert (await wait_final(client, h, again))["status"] == "succeeded"
    assert not (folder / "REJECTED").exists()
    health = (await client.get("/api/health", headers=h)).json()
    assert not any(e["source"] == "partner" for e in health["errors"]), health["errors"]


async def test_symlinked_parquet_is_refused_before_anything_moves(client, app, admin_token, auth):
    """A run must not publish (or, once superseded, delete) a file outside its folder through a link."""
    instance = app.state.instance
    h = auth(admin_token)
    inbox, extracts = instance.settings.inbox_dir, instance.settings.extracts_dir
    for name in ("other", "partner"):
        _drop(inbox, name)
        [job_id] = await on_app(client, scan_inbox, instance)
        assert (await wait_final(client, h, job_id))["status"] == "succeeded"
    published = current_run(extracts, "partner")
    victim = current_run(extracts, "other") / "data" / "orders.parquet"
    victim_bytes = victim.read_bytes()
    folder = _drop(inbox, "partner")
    (folder / "data" / "orders.parquet").unlink()
    (folder / "data" / "orders.parquet").symlink_to(victim)
    [bad] = await on_app(client, scan_inbox, instance)
    job = await wait_final(client, h, bad)
    assert job["status"] == "failed" and "data/orders.parquet is a symbolic link" in job["error"], job
    rejected = (folder / "REJECTED").read_text()
    assert "data/orders.parquet is a symbolic link" in rejected and str(victim) in rejected
    assert not (folder / "READY").exists() and await on_app(client, scan_inbox, instance) == []
    assert (folder / "data" / "orders.parquet").is_symlink() and (folder / "extract.duckdb").is_file()
    assert current_run(extracts, "partner") == published  # nothing published
    assert victim.is_file() and not victim.is_symlink() and victim.read_bytes() == victim_bytes
    health = (await client.get("/api/health", headers=h)).json()
    assert any(e["code"] == "extract_invalid" and e["source"] == "partner" for e in health["errors"])
    await on_app(client, instance.serving.refresh, force=True)
    for source in ("partner", "other"):
        count = instance.serving.catalog.execute_readonly(f'SELECT count(*) AS n FROM "{source}"."orders"')
        assert count.to_pylist() == [{"n": 3}]


async def test_symlinked_inbox_folder_is_refused_and_its_target_untouched(client, app, admin_token, auth,
                                                                           tmp_path: Path):
    instance = app.state.instance
    h = auth(admin_token)
    inbox = instance.settings.inbox_dir
    elsewhere = _drop(tmp_path, "elsewhere")
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "linked").symlink_to(elsewhere, target_is_directory=True)
    assert await on_app(client, scan_inbox, instance) == []
    assert (inbox / "linked").is_dir() and not (inbox / "linked").is_symlink()
    assert "symbolic link" in (inbox / "linked" / "REJECTED").read_text()
    assert sorted(p.name for p in elsewhere.iterdir()) == ["READY", "data", "extract.duckdb"]  # untouched
    assert await on_app(client, scan_inbox, instance) == []
    health = (await client.get("/api/health", headers=h)).json()
    assert any(e["code"] == "extract_invalid" and "symbolic link" in e["message"] for e in health["errors"])


async def test_inbox_name_problems_are_refused(client, app, admin_token, auth):
    instance = app.state.instance
    h = auth(admin_token)
    configured = await client.post("/api/admin/configure", json={"data_source": "sample"}, headers=h)
    assert configured.status_code == 200, configured.text
    inbox = instance.settings.inbox_dir
    _drop(inbox, "sample")  # taken by a non-external source
    _drop(inbox, "Bad-Name")
    assert await on_app(client, scan_inbox, instance) == []
    assert "already exists" in (inbox / "sample" / "REJECTED").read_text()
    assert (inbox / "Bad-Name" / "REJECTED").exists()
    assert not (inbox / "sample" / "READY").exists()  # not retried every tick
    health = (await client.get("/api/health", headers=h)).json()
    assert sum(e["code"] == "extract_invalid" for e in health["errors"]) == 2
