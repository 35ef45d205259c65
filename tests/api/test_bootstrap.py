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
