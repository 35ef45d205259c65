import time

import jwt

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, create_user, login


async def test_login_and_wrong_password(client, admin_token):
    assert await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    assert await login(client, ADMIN_EMAIL.upper(), ADMIN_PASSWORD)  # emails are case-insensitive
    bad = await client.post("/auth/token", json={"email": ADMIN_EMAIL, "password": "nope-nope-nope"})
    assert bad.status_code == 401
    assert bad.json()["error"]["code"] == "invalid_credentials"
    unknown = await client.post("/auth/token", json={"email": "ghost@example.com", "password": "whatever-123"})
    assert unknown.status_code == 401 and unknown.json()["error"] == bad.json()["error"]


async def test_failed_logins_back_off_per_account_and_address(client, admin_token, make_settings):
    body = {"email": ADMIN_EMAIL, "password": "wrong-password-1"}
    codes = [(await client.post("/auth/token", json=body)).status_code for _ in range(5)]
    assert codes == [401] * 5  # five free failures
    sixth = await client.post("/auth/token", json=body)
    assert sixth.status_code == 401
    blocked = await client.post("/auth/token", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) >= 1
    assert blocked.json()["error"]["code"] == "too_many_attempts"
    # Another account from the same address is not affected: no lock-out of the admin by proxy.
    other = await client.post("/auth/token", json={"email": "other@example.com", "password": "x-long-password"})
    assert other.status_code == 401


async def test_backoff_expires(client, admin_token, app):
    instance = app.state.instance
    body = {"email": ADMIN_EMAIL, "password": "wrong-password-1"}
    for _ in range(6):
        await client.post("/auth/token", json=body)
    assert (await client.post("/auth/token", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})).status_code == 429
    async with instance.control.transaction() as conn:
        await conn.execute("UPDATE login_failures SET blocked_until = ?", (time.time() - 1,))
    assert (await client.post("/auth/token", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})).status_code == 200


async def test_role_is_read_from_database_on_each_request(client, admin_token, auth):
    user = await create_user(client, admin_token, "ana@example.com", "analyst")
    token = await login(client, "ana@example.com", "another-long-passphrase")
    assert (await client.get("/api/users", headers=auth(token))).status_code == 403
    promote = await client.patch(f"/api/users/{user['id']}", json={"role": "admin"}, headers=auth(admin_token))
    assert promote.status_code == 200
    assert (await client.get("/api/users", headers=auth(token))).status_code == 200  # same JWT, new role
    await client.patch(f"/api/users/{user['id']}", json={"active": False}, headers=auth(admin_token))
    gone = await client.get("/api/me", headers=auth(token))
    assert gone.status_code == 401 and gone.json()["error"]["code"] == "invalid_token"
    assert "bearer" in gone.headers["www-authenticate"].lower()


async def test_tampered_expired_and_malformed_tokens(client, admin_token, auth, app):
    claims = jwt.decode(admin_token, options={"verify_signature": False})
    forged = jwt.encode({**claims, "sub": "1"}, "not-the-key-but-long-enough-to-sign-hs256", algorithm="HS256")
    expired = jwt.encode({**claims, "exp": int(time.time()) - 10}, app.state.instance.secrets.jwt_key, algorithm="HS256")
    for token in (forged, expired, "garbage", admin_token + "x"):
        resp = await client.get("/api/me", headers=auth(token))
        assert resp.status_code == 401, token
        assert resp.json()["error"]["code"] == "invalid_token"
    basic = await client.get("/api/me", headers={"Authorization": "Basic YWRtaW46YWRtaW4="})
    assert basic.status_code == 401 and "Bearer" in basic.json()["error"]["message"]
    # A public route ignores a stale token instead of failing.
    assert (await client.get("/api/health", headers=auth("garbage"))).status_code == 200


async def test_auth_events_are_audited(client, admin_token, app):
    await client.post("/auth/token", json={"email": ADMIN_EMAIL, "password": "wrong-password-1"})
    await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    async with app.state.instance.control.read() as conn:
        async with conn.execute("SELECT action, actor FROM audit_log ORDER BY id") as cur:
            rows = [tuple(r) for r in await cur.fetchall()]
    actions = [a for a, _ in rows]
    assert actions[:1] == ["bootstrap"]
    assert "login_failed" in actions and "login" in actions
