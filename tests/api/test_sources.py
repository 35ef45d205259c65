"""POST /api/admin/configure and /api/admin/sources: real app, real SQLite, real files."""

from __future__ import annotations

import logging

import pytest
import yaml
from litestar import Litestar

from agnes.app import create_app
from tests.api.source_helpers import audit_rows, sql, write_connector
from tests.conftest import create_user, login

SECRET = "sk-live-0123456789abcdefWXYZ"  # noqa: S105 - a test secret that must never leak


@pytest.fixture
def app(make_settings, custom_dir) -> Litestar:
    return create_app(make_settings(AGNES_CUSTOM_CONNECTORS_DIR=str(custom_dir)))


async def configure(client, h, body, status=200):
    resp = await client.post("/api/admin/configure", json=body, headers=h)
    assert resp.status_code == status, resp.text
    return resp.json()


async def test_configure_sample_is_idempotent_and_audited_once(client, admin_token, auth, app, data_dir):
    h = auth(admin_token)
    first = await configure(client, h, {"data_source": "sample"})
    assert (first["name"], first["type"], first["created"], first["changed"]) == ("sample", "sample", True, [])
    assert first["visible_to_all"] is False and first["status"] == "never_synced" and first["origin"] == "api"
    again = await configure(client, h, {"data_source": "sample"})
    assert (again["created"], again["changed"], again["updated_at"]) == (False, [], first["updated_at"])
    assert [a for a, _ in await audit_rows(app)] == ["source_created"]
    changed = await configure(client, h, {"data_source": "sample", "visible_to_all": True, "schedule": "0 3 * * *"})
    assert changed["changed"] == ["schedule", "visible_to_all"] and changed["next_sync_at"].endswith("03:00:00Z")
    assert [a for a, _ in await audit_rows(app)] == ["source_created", "source_updated"]
    # omitted fields keep their value
    kept = await configure(client, h, {"data_source": "sample"})
    assert kept["changed"] == [] and kept["schedule"] == "0 3 * * *" and kept["visible_to_all"] is True
    listed = (await client.get("/api/admin/sources", headers=h)).json()
    assert listed["count"] == 1 and listed["items"][0]["name"] == "sample"
    assert (await client.get("/api/admin/sources/sample", headers=h)).json()["schedule"] == "0 3 * * *"


async def test_csv_creates_its_upload_folder(client, admin_token, auth, data_dir):
    body = await configure(client, auth(admin_token), {"data_source": "csv", "name": "sales"})
    assert body["name"] == "sales" and (data_dir / "uploads" / "sales").is_dir()


async def test_bad_bodies_are_explained_and_store_nothing(client, admin_token, auth, app):
    h = auth(admin_token)
    cases = [
        ({"data_source": "oracle"}, 400, "unsupported_data_source", "csv, custom, keboola, sample"),
        ({"data_source": "external"}, 400, "unsupported_data_source", "inbox"),
        ({"name": "x"}, 400, "validation_failed", "data_source"),
        ({"data_source": "csv", "name": "Sales-2024"}, 400, "invalid_source_name", "sales_2024"),
        ({"data_source": "csv", "name": "select"}, 400, "invalid_source_name", "^[a-z]"),
        ({"data_source": "csv", "name": 7}, 400, "invalid_source_name", "^[a-z]"),
        ({"data_source": "csv", "delimiter": ";"}, 400, "unknown_option", "no options of its own"),
        ({"data_source": "custom", "connector": "my_api", "colour": 1}, 400, "unknown_option", "connector, options"),
        ({"data_source": "custom"}, 400, "invalid_option", "connector"),
        ({"data_source": "custom", "connector": 5}, 400, "invalid_option", "connector"),
        ({"data_source": "custom", "connector": "nope"}, 400, "connector_not_found", "my_api"),
        ({"data_source": "custom", "connector": "csv", "name": "c"}, 400, "connector_not_found", "data_source"),
        ({"data_source": "custom", "connector": "my_api", "options": {"password": "x"}}, 400, "invalid_option",
         "secrets"),
        ({"data_source": "custom", "connector": "my_api", "secrets": {"PATH": "x"}}, 400, "invalid_option", "MY_API"),
        ({"data_source": "custom", "connector": "my_api", "secrets": {"lower": "x"}}, 400, "invalid_option", "upper"),
        ({"data_source": "custom", "connector": "my_api", "secrets": ["x"]}, 400, "invalid_option", "ENV_NAME"),
        ({"data_source": "sample", "schedule": "every day"}, 400, "invalid_schedule", "0 3 * * *"),
        ({"data_source": "sample", "schedule": "0 3 * * * *"}, 400, "invalid_schedule", "five cron fields"),
        ({"data_source": "sample", "schedule": "0 0 31 2 *"}, 400, "invalid_schedule", "UTC"),
        # croniter's non-standard fields: random, hashed, last day, nth weekday, '?'
        ({"data_source": "sample", "schedule": "R 3 * * *"}, 400, "invalid_schedule", "five cron fields"),
        ({"data_source": "sample", "schedule": "0 H * * *"}, 400, "invalid_schedule", "five cron fields"),
        ({"data_source": "sample", "schedule": "0 3 L * *"}, 400, "invalid_schedule", "five cron fields"),
        ({"data_source": "sample", "schedule": "0 3 * * 1#2"}, 400, "invalid_schedule", "five cron fields"),
        ({"data_source": "sample", "schedule": "0 3 ? * *"}, 400, "invalid_schedule", "five cron fields"),
        ({"data_source": "sample", "schedule": "0 3 * mon *"}, 400, "invalid_schedule", "five cron fields"),
        ({"data_source": "sample", "visible_to_all": "yes"}, 400, "invalid_option", "true"),
    ]
    for body, status, code, in_text in cases:
        resp = await client.post("/api/admin/configure", json=body, headers=h)
        assert resp.status_code == status, (body, resp.text)
        err = resp.json()["error"]
        assert err["code"] == code, (body, err)
        assert in_text in err["message"] + err["hint"], (body, err)
    assert (await client.get("/api/admin/sources", headers=h)).json()["count"] == 0
    assert await audit_rows(app) == []


async def test_type_conflict_and_roles(client, admin_token, auth):
    h = auth(admin_token)
    await configure(client, h, {"data_source": "csv", "name": "data1"})
    clash = await client.post("/api/admin/configure", json={"data_source": "sample", "name": "data1"}, headers=h)
    assert clash.status_code == 409 and "confirm=data1" in clash.json()["error"]["hint"]
    await create_user(client, admin_token, "an@example.com", "analyst")
    analyst = auth(await login(client, "an@example.com", "another-long-passphrase"))
    for call in (client.post("/api/admin/configure", json={"data_source": "sample"}, headers=analyst),
                 client.get("/api/admin/sources", headers=analyst)):
        assert (await call).status_code == 403
    assert (await client.get("/api/admin/sources")).status_code == 401


async def test_custom_secrets_are_encrypted_masked_and_never_leak(client, admin_token, auth, app, data_dir, caplog):
    caplog.set_level(logging.DEBUG)
    h = auth(admin_token)
    body = {"data_source": "custom", "connector": "my_api", "options": {"base_url": "https://api.example.com"},
            "secrets": {"MY_API_KEY": SECRET}}
    first = await configure(client, h, body)
    assert first["name"] == "my_api" and first["secrets"] == {"MY_API_KEY": "••••WXYZ"}
    assert first["options"] == {"connector": "my_api", "options": {"base_url": "https://api.example.com"}}
    assert (await configure(client, h, body))["changed"] == []  # same secret again: no change
    rotated = await configure(client, h, {**body, "secrets": {"MY_API_KEY": SECRET + "2"}})
    assert rotated["changed"] == ["MY_API_KEY"]
    short = await configure(client, h, {**body, "secrets": {"MY_API_KEY": "abc"}})
    assert short["secrets"] == {"MY_API_KEY": "••••"}
    await configure(client, h, {**body, "secrets": {"MY_API_KEY": SECRET}})
    listed = await client.get("/api/admin/sources", headers=h)
    for text in (listed.text, first.__repr__(), caplog.text, (data_dir / "config" / "instance.yaml").read_text(),
                 str(await audit_rows(app))):
        assert SECRET not in text and SECRET[:-4] not in text
    stored = await sql(app, "SELECT ciphertext, env_ref FROM source_secrets WHERE source = 'my_api'")
    assert len(stored) == 1 and SECRET not in stored[0][0] and stored[0][1] is None
    assert app.state.instance.encryptor.decrypt(stored[0][0]) == SECRET
    raw = b"".join(p.read_bytes() for p in (data_dir / "state").glob("agnes.sqlite*"))
    assert SECRET.encode() not in raw
    export = yaml.safe_load((data_dir / "config" / "instance.yaml").read_text())
    assert export["sources"] == [{"name": "my_api", "data_source": "custom", "connector": "my_api",
                                  "options": {"base_url": "https://api.example.com"},
                                  "secrets": {"MY_API_KEY": "${MY_API_KEY}"}, "visible_to_all": False}]
    removed = await configure(client, h, {**body, "secrets": {"MY_API_KEY": None}})
    assert removed["secrets"] == {} and removed["changed"] == ["MY_API_KEY"]


async def test_custom_connector_with_missing_requirements_is_refused(client, admin_token, auth, custom_dir):
    write_connector(custom_dir, "needy", requirements="surely-not-installed-pkg==1.0\n")
    resp = await client.post("/api/admin/configure", json={"data_source": "custom", "connector": "needy"},
                             headers=auth(admin_token))
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "source_check_failed"
    assert "surely-not-installed-pkg" in resp.json()["error"]["message"]


async def test_export_is_rewritten_atomically_and_a_failed_write_changes_nothing(
        client, admin_token, auth, app, data_dir, monkeypatch):
    h = auth(admin_token)
    export = data_dir / "config" / "instance.yaml"
    await configure(client, h, {"data_source": "sample", "schedule": "@daily"})
    before = export.read_text()
    assert yaml.safe_load(before)["sources"] == [{"name": "sample", "data_source": "sample", "schedule": "@daily",
                                                  "visible_to_all": False}]

    def refuse(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("agnes.services.config_export.os.replace", refuse)
    resp = await client.post("/api/admin/configure", json={"data_source": "csv"}, headers=h)
    assert resp.status_code == 500 and resp.json()["error"]["code"] == "data_dir_unusable"
    assert "No space left" in resp.json()["error"]["message"]
    monkeypatch.undo()
    assert export.read_text() == before  # old export intact, no temp file left behind
    assert [p.name for p in export.parent.iterdir()] == ["instance.yaml"]
    assert [s["name"] for s in (await client.get("/api/admin/sources", headers=h)).json()["items"]] == ["sample"]
    patched = await client.patch("/api/admin/sources/sample", json={"visible_to_all": True}, headers=h)
    assert patched.status_code == 200
    assert yaml.safe_load(export.read_text())["sources"][0]["visible_to_all"] is True


async def test_patch_source(client, admin_token, auth, app):
    h = auth(admin_token)
    await configure(client, h, {"data_source": "sample"})
    ok = await client.patch("/api/admin/sources/sample", json={"schedule": " */30  * * * * "}, headers=h)
    assert ok.status_code == 200 and ok.json()["schedule"] == "*/30 * * * *" and ok.json()["next_sync_at"]
    cleared = await client.patch("/api/admin/sources/sample", json={"schedule": None}, headers=h)
    assert cleared.json()["schedule"] is None and cleared.json()["next_sync_at"] is None
    same = await client.patch("/api/admin/sources/sample", json={"schedule": None}, headers=h)
    assert same.status_code == 200
    for body, code in (({}, "empty_update"), ({"schedule": "61 * * * *"}, "invalid_schedule"),
                       ({"colour": "red"}, "validation_failed"), ({"visible_to_all": "yes"}, "validation_failed")):
        resp = await client.patch("/api/admin/sources/sample", json=body, headers=h)
        assert resp.status_code == 400 and resp.json()["error"]["code"] == code, resp.text
    missing = await client.patch("/api/admin/sources/nope", json={"visible_to_all": True}, headers=h)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "source_not_found"
    assert [a for a, _ in await audit_rows(app)] == ["source_created", "source_updated", "source_updated"]


async def test_delete_needs_confirmation_and_removes_everything(client, admin_token, auth, app, data_dir):
    h = auth(admin_token)
    await configure(client, h, {"data_source": "csv", "name": "sales"})
    upload = await client.post("/api/admin/uploads?source=sales", headers=h,
                               files={"file": ("orders.csv", b"id,total\n1,2.5\n")})
    assert upload.status_code == 201, upload.text
    assert (await client.post("/api/admin/discover-and-register?source=sales", headers=h)).status_code == 200
    viewer = await create_user(client, admin_token, "v@example.com", "viewer")
    await sql(app, "INSERT INTO grants (user_id, target, source, created_at) VALUES (?, 'sales.orders', 'sales', 'x')",
              (viewer["id"],))
    published = data_dir / "extracts" / "sales" / "runs" / "r1"
    published.mkdir(parents=True)
    (data_dir / "extracts" / "sales" / "current").symlink_to(published)
    counter = (await sql(app, "SELECT value FROM publication_counter"))[0][0]

    for confirm in ("", "?confirm=Sales", "?confirm=other"):
        resp = await client.delete(f"/api/admin/sources/sales{confirm}", headers=h)
        assert resp.status_code == 400 and resp.json()["error"]["code"] == "confirmation_required"
        assert "?confirm=sales" in resp.json()["error"]["hint"] and "1 registered table" in resp.text
    await sql(app, "INSERT INTO jobs (status, sources, created_at) VALUES ('running', '[\"sales\"]', 'x')")
    busy = await client.delete("/api/admin/sources/sales?confirm=sales", headers=h)
    assert busy.status_code == 409 and "/cancel" in busy.json()["error"]["hint"]
    shown = (await client.get("/api/admin/sources/sales", headers=h)).json()
    assert shown["status"] == "running" and shown["last_sync"]["status"] == "running" and shown["tables"] == 1
    await sql(app, "UPDATE jobs SET status = 'failed'")
    assert (await client.delete("/api/admin/sources/sales?confirm=sales", headers=h)).status_code == 204
    assert (await client.get("/api/admin/sources/sales", headers=h)).status_code == 404
    for table in ("registered_tables", "grants", "source_secrets"):
        assert await sql(app, f"SELECT count(*) FROM {table}") == [(0,)]  # noqa: S608
    assert (await sql(app, "SELECT value FROM publication_counter"))[0][0] == counter + 1
    assert not (data_dir / "extracts" / "sales").exists() and not (data_dir / "uploads" / "sales").exists()
    assert "sources: []" in (data_dir / "config" / "instance.yaml").read_text()
    assert [a for a, _ in await audit_rows(app)] == ["source_created", "source_deleted"]
    gone = await client.delete("/api/admin/sources/sales?confirm=sales", headers=h)
    assert gone.status_code == 404


async def test_inbox_sources_are_registered_once_and_not_exported(client, admin_token, auth, app, data_dir):
    from agnes.services.sources import ensure_external_source

    instance = app.state.instance
    assert await ensure_external_source(instance, "partner") is True
    assert await ensure_external_source(instance, "partner") is False
    h = auth(admin_token)
    shown = (await client.get("/api/admin/sources/partner", headers=h)).json()
    assert (shown["type"], shown["origin"]) == ("external", "inbox")
    assert "partner" not in (data_dir / "config" / "instance.yaml").read_text()
    refused = await client.patch("/api/admin/sources/partner", json={"schedule": "@daily"}, headers=h)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_schedule"
    assert (await client.patch("/api/admin/sources/partner", json={"visible_to_all": True}, headers=h)).status_code \
        == 200
    clash = await client.post("/api/admin/configure", json={"data_source": "csv", "name": "partner"}, headers=h)
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "source_type_conflict"
    found = (await client.post("/api/admin/discover-and-register?source=partner", headers=h)).json()["sources"][0]
    assert found["registered"] == [] and found["error"] is None


async def _sync(client, h, body):
    from tests.serving_helpers import wait_job

    resp = await client.post("/api/sync/trigger", json=body, headers=h)
    assert resp.status_code == 200, resp.text
    return await wait_job(client, h, resp.json()["job_id"])


async def test_each_source_shows_its_own_outcome_and_a_recreated_source_starts_afresh(
        client, admin_token, auth, data_dir):
    h = auth(admin_token)
    await configure(client, h, {"data_source": "sample"})
    await configure(client, h, {"data_source": "csv"})
    (data_dir / "uploads" / "csv" / "broken.csv").write_bytes(b"")  # staged by hand: an upload would refuse it
    job = await _sync(client, h, {})
    assert job["status"] == "partial" and sorted(job["sources"]) == ["csv", "sample"]
    by_name = {s["name"]: s for s in (await client.get("/api/admin/sources", headers=h)).json()["items"]}
    sample, csv = by_name["sample"], by_name["csv"]
    assert (sample["status"], sample["last_sync"]["status"], sample["last_sync"]["error"]) == (
        "succeeded", "succeeded", None)
    assert sample["last_sync"]["job_id"] == job["id"] and sample["last_sync"]["finished_at"]
    assert (csv["status"], csv["last_sync"]["status"]) == ("failed", "failed")
    assert "broken.csv" in csv["last_sync"]["error"] and "sample" not in csv["last_sync"]["error"]

    assert (await client.delete("/api/admin/sources/csv?confirm=csv", headers=h)).status_code == 204
    again = await configure(client, h, {"data_source": "csv"})
    assert (again["status"], again["last_sync"]) == ("never_synced", None)
    shown = (await client.get("/api/admin/sources/csv", headers=h)).json()
    assert (shown["status"], shown["last_sync"]) == ("never_synced", None)


async def test_deleting_a_source_whose_sync_failed_makes_health_healthy_again(client, admin_token, auth, data_dir):
    h = auth(admin_token)
    await configure(client, h, {"data_source": "csv", "name": "broken"})
    (data_dir / "uploads" / "broken" / "bad.csv").write_bytes(b"")  # every table fails: the connector exits 1
    assert (await _sync(client, h, {"source": "broken"}))["status"] == "failed"
    health = (await client.get("/api/health")).json()
    assert health["status"] == "degraded" and [e["source"] for e in health["errors"]] == ["broken"]
    assert (await client.delete("/api/admin/sources/broken?confirm=broken", headers=h)).status_code == 204
    health = (await client.get("/api/health")).json()
    assert health["status"] == "healthy" and health["errors"] == [], health


async def test_csv_check_fails_when_the_upload_folder_is_not_writable(client, admin_token, auth, data_dir):
    h = auth(admin_token)
    uploads = data_dir / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    (uploads / "sales").write_text("a file where the folder should be")  # chmod means nothing to root
    err = (await configure(client, h, {"data_source": "csv", "name": "sales"}, status=400))["error"]
    assert err["code"] == "source_check_failed" and "is not writable" in err["message"]
    assert "DATA_DIR" in err["hint"]
    assert (await client.get("/api/admin/sources/sales", headers=h)).status_code == 404  # nothing stored
