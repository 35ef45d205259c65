import asyncio
from pathlib import Path

import jwt

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, bootstrap, login, setup_token_of


async def test_fresh_instance_reports_setup_required(client, data_dir: Path):
    resp = await client.get("/api/health")
    assert resp.status_code == 200
    body = resp.json()
    assert body["setup_required"] is True
    token_file = data_dir / "state" / "setup-token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert len(token_file.read_text().strip()) >= 16
    # The token is never served over HTTP.
    for path in ("/api/health", "/setup", "/schema/openapi.json"):
        assert setup_token_of(data_dir) not in (await client.get(path)).text


async def test_bootstrap_with_wrong_or_missing_token_is_refused(client, data_dir: Path):
    body = {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    missing = await client.post("/auth/bootstrap", json=body)
    assert missing.status_code == 403
    assert missing.json()["error"]["code"] == "invalid_setup_token"
    assert "agnes setup-token" in missing.json()["error"]["hint"]
    wrong = await client.post("/auth/bootstrap", json={**body, "setup_token": "x" * 32})
    assert wrong.status_code == 403
    assert (data_dir / "state" / "setup-token").exists()
    assert (await client.get("/api/health")).json()["setup_required"] is True


async def test_bootstrap_creates_admin_and_consumes_token(client, data_dir: Path, auth):
    token = setup_token_of(data_dir)
    resp = await client.post(
        "/auth/bootstrap", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
        headers={"X-Setup-Token": token},
    )
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["token_type"] == "bearer"
    assert body["user"]["role"] == "admin" and body["user"]["email"] == ADMIN_EMAIL
    assert body["expires_in"] > 0
    assert not (data_dir / "state" / "setup-token").exists()
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == str(body["user"]["id"]) and claims["jti"]
    me = await client.get("/api/me", headers=auth(body["access_token"]))
    assert me.status_code == 200 and me.json()["email"] == ADMIN_EMAIL
    # /auth/token reproduces a working token for the same user.
    again = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    assert (await client.get("/api/me", headers=auth(again))).json()["id"] == body["user"]["id"]
    # Setup mode is over.
    assert (await client.get("/api/health")).json()["setup_required"] is False
    second = await client.post("/auth/bootstrap", json={"email": "b@example.com", "password": ADMIN_PASSWORD,
                                                         "setup_token": token})
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "already_bootstrapped"


async def test_concurrent_bootstraps_create_exactly_one_admin(client, data_dir: Path, auth):
    token = setup_token_of(data_dir)

    async def attempt(i: int):
        return await client.post("/auth/bootstrap", json={
            "email": f"admin{i}@example.com", "password": ADMIN_PASSWORD, "setup_token": token})

    results = await asyncio.gather(*(attempt(i) for i in range(12)))
    codes = sorted(r.status_code for r in results)
    assert codes.count(201) == 1, codes
    assert set(codes) <= {201, 409}
    winner = next(r for r in results if r.status_code == 201).json()
    users = await client.get("/api/users", headers=auth(winner["access_token"]))
    assert users.json()["count"] == 1


async def test_weak_password_is_explained(client, data_dir: Path):
    resp = await client.post("/auth/bootstrap", json={
        "email": ADMIN_EMAIL, "password": "short", "setup_token": setup_token_of(data_dir)})
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert err["code"] == "weak_password"
    assert "12" in err["message"]
    assert (data_dir / "state" / "setup-token").exists()


async def test_preset_setup_token_from_environment(make_settings, data_dir: Path):
    from litestar.testing import AsyncTestClient

    from agnes.app import create_app

    preset = "provisioned-by-terraform-0123456789"
    app = create_app(make_settings(AGNES_SETUP_TOKEN=preset))
    async with AsyncTestClient(app=app) as c:
        assert setup_token_of(data_dir) == preset
        resp = await c.post("/auth/bootstrap", json={
            "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "setup_token": preset})
        assert resp.status_code == 201


async def test_setup_token_survives_restart_until_used(make_settings, data_dir: Path):
    from litestar.testing import AsyncTestClient

    from agnes.app import create_app

    async with AsyncTestClient(app=create_app(make_settings())):
        first = setup_token_of(data_dir)
    async with AsyncTestClient(app=create_app(make_settings())) as c:
        assert setup_token_of(data_dir) == first
        await bootstrap(c, data_dir)
    async with AsyncTestClient(app=create_app(make_settings())) as c:
        assert not (data_dir / "state" / "setup-token").exists()
        assert (await c.get("/api/health")).json()["setup_required"] is False


async def test_bootstrap_is_refused_while_the_schema_is_not_the_one_this_code_knows(client, data_dir: Path):
    """The guard inside the bootstrap transaction: the first admin is written only into a control plane
    at the schema this code knows (the live-server test covers a server that waits for the migration lock)."""
    import sqlite3

    from agnes.control.migrate import LATEST_SCHEMA

    db = data_dir / "state" / "agnes.sqlite"
    body = {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "setup_token": setup_token_of(data_dir)}
    for version in (LATEST_SCHEMA - 1, LATEST_SCHEMA + 1):  # mid-migration / migrated by a newer Agnes
        with sqlite3.connect(db) as conn:
            conn.execute(f"PRAGMA user_version = {version}")
        conn.close()
        resp = await client.post("/auth/bootstrap", json=body)
        assert resp.status_code == 503, resp.text
        err = resp.json()["error"]
        assert err["code"] == "not_ready" and f"schema {version}" in err["message"]
        assert err["hint"]
        assert (data_dir / "state" / "setup-token").exists()
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {LATEST_SCHEMA}")
    conn.close()
    assert (await client.post("/auth/bootstrap", json=body)).status_code == 201


async def test_a_failed_commit_keeps_the_setup_token_for_a_retry(client, data_dir: Path, monkeypatch):
    """The token file goes only after COMMIT. Here COMMIT itself fails: a step inside the transaction
    leaves a deferred foreign-key violation, which SQLite reports at COMMIT and rolls back."""
    from agnes.control import audit

    original = audit.record

    async def record_then_break_the_commit(conn, **kw):
        await original(conn, **kw)
        if kw.get("action") == "bootstrap":
            await conn.execute("PRAGMA defer_foreign_keys = ON")
            await conn.execute("INSERT INTO api_tokens (user_id, name, prefix, token_hash, created_at) "
                               "VALUES (424242, 'orphan', 'p', 'h', 'x')")

    monkeypatch.setattr(audit, "record", record_then_break_the_commit)
    token = setup_token_of(data_dir)
    body = {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "setup_token": token}
    failed = await client.post("/auth/bootstrap", json=body)
    assert failed.status_code == 500, failed.text
    assert setup_token_of(data_dir) == token  # still there for the retry
    assert (await client.get("/api/health")).json()["setup_required"] is True
    monkeypatch.setattr(audit, "record", original)
    retry = await client.post("/auth/bootstrap", json=body)
    assert retry.status_code == 201, retry.text
    assert not (data_dir / "state" / "setup-token").exists()


async def test_setup_token_reaches_stderr_whatever_the_log_level(make_settings, data_dir: Path, capsys):
    """AGNES_LOG_LEVEL=error (or any logging set-up) must not hide the token from whoever installs."""
    import logging

    from litestar.testing import AsyncTestClient

    from agnes.app import create_app

    agnes_log = logging.getLogger("agnes")
    before = agnes_log.level
    agnes_log.setLevel(logging.ERROR)  # what AGNES_LOG_LEVEL=error asks for
    try:
        async with AsyncTestClient(app=create_app(make_settings())):
            token = setup_token_of(data_dir)
    finally:
        agnes_log.setLevel(before)
    err = capsys.readouterr().err
    assert err.count(token) == 1, err
    assert "agnes setup-token" in err and "/auth/bootstrap" in err
