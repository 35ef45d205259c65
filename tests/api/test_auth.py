import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import jwt
import uvicorn
from litestar.testing import AsyncTestClient

from agnes.app import create_app
from agnes.services import auth as auth_service
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, bootstrap, create_user, login, setup_token_of
from tests.helpers import free_port


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


async def failures_stored(app) -> list[int]:
    async with app.state.instance.control.read() as conn:
        async with conn.execute("SELECT failures FROM login_failures") as cur:
            return [r[0] for r in await cur.fetchall()]


@asynccontextmanager
async def served_over_http(app) -> AsyncIterator[str]:
    """The app behind a real uvicorn in this event loop: requests really run at the same time
    (the Litestar test client handles one request after the other)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def test_parallel_wrong_logins_cannot_skip_the_back_off(make_settings, data_dir):
    """The block check and the count are one transaction: 30 guesses at once get the same back-off as in a row."""
    app = create_app(make_settings())
    async with served_over_http(app) as url, httpx.AsyncClient(base_url=url, timeout=60) as http:
        token = setup_token_of(data_dir)
        boot = await http.post("/auth/bootstrap", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD,
                                                         "setup_token": token})
        assert boot.status_code == 201, boot.text
        free = app.state.instance.settings.auth.login_free_failures
        body = {"email": ADMIN_EMAIL, "password": "wrong-password-1"}
        answers = await asyncio.gather(*(http.post("/auth/token", json=body) for _ in range(30)))
        codes = sorted(r.status_code for r in answers)
        assert codes.count(401) <= free + 1, codes
        assert codes == [401] * codes.count(401) + [429] * (30 - codes.count(401)), codes
        assert all(int(r.headers["retry-after"]) >= 1 for r in answers if r.status_code == 429)
        assert await failures_stored(app) == [codes.count(401)]  # every guess that was checked was counted
        blocked = await http.post("/auth/token", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
        assert blocked.status_code == 429


async def test_right_password_on_the_last_counted_attempt_still_logs_in(client, admin_token, app):
    """Attempts are counted before the password check; a right one must not be turned into a block."""
    free = app.state.instance.settings.auth.login_free_failures
    for _ in range(free):
        assert (await client.post("/auth/token", json={"email": ADMIN_EMAIL, "password": "wrong-password-1"})
                ).status_code == 401
    assert await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)  # would be attempt free+1, which sets a block
    assert await failures_stored(app) == []
    assert await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)


async def test_another_address_still_logs_in_while_one_is_blocked(make_settings, data_dir):
    app = create_app(make_settings(AGNES_TRUSTED_PROXIES="*"))  # the test client counts as a trusted proxy
    attacker, admin = {"X-Forwarded-For": "203.0.113.7"}, {"X-Forwarded-For": "198.51.100.20"}
    async with AsyncTestClient(app=app) as client:
        await bootstrap(client, data_dir)
        for _ in range(app.state.instance.settings.auth.login_free_failures + 1):
            await client.post("/auth/token", json={"email": ADMIN_EMAIL, "password": "wrong-password-1"},
                              headers=attacker)
        right = {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        assert (await client.post("/auth/token", json=right, headers=attacker)).status_code == 429
        from_elsewhere = await client.post("/auth/token", json=right, headers=admin)
        assert from_elsewhere.status_code == 200, from_elsewhere.text
        assert (await client.post("/auth/token", json=right, headers=attacker)).status_code == 429  # still blocked


async def test_back_off_doubles_up_to_the_configured_cap(make_settings, data_dir):
    app = create_app(make_settings(AGNES_LOGIN_FREE_FAILURES="1", AGNES_LOGIN_MAX_BACKOFF="8"))
    wrong = {"email": ADMIN_EMAIL, "password": "wrong-password-1"}
    async with AsyncTestClient(app=app) as client:
        await bootstrap(client, data_dir)
        assert (await client.post("/auth/token", json=wrong)).status_code == 401  # the one free failure
        waits = []
        for _ in range(5):
            assert (await client.post("/auth/token", json=wrong)).status_code == 401
            refused = await client.post("/auth/token", json=wrong)
            assert refused.status_code == 429
            waits.append(int(refused.headers["retry-after"]))
            async with app.state.instance.control.transaction() as conn:  # wait the block out, instantly
                await conn.execute("UPDATE login_failures SET blocked_until = ?", (time.time() - 1,))
        # 2, 4, 8, then capped at 8 (a second of slack: Retry-After is rounded up from what is left)
        for got, want in zip(waits, [2, 4, 8, 8, 8], strict=True):
            assert want - 1 <= got <= want, waits
        assert waits[0] < waits[1] < waits[2] and (await failures_stored(app)) == [6]


async def test_stale_counters_are_forgotten_on_write(client, admin_token, app, monkeypatch):
    """Guesses at random emails leave a row each; rows long quiet are deleted, not only on a success."""
    monkeypatch.setattr(auth_service, "_LAST_SWEEP", {})
    cfg = app.state.instance.settings.auth
    keep = auth_service.forget_after_seconds(cfg.login_free_failures, cfg.login_max_backoff_seconds)
    now = time.time()
    async with app.state.instance.control.transaction() as conn:
        await conn.executemany(
            "INSERT INTO login_failures (key, failures, last_failed_at, blocked_until) VALUES (?, ?, ?, ?)",
            [("stale", 1, now - keep - 60, 0), ("stale-blocked-long-ago", 20, now - keep - 60, now - keep),
             ("recent", 3, now - 60, 0), ("still-blocked", 30, now - keep - 60, now + 600)])
    await client.post("/auth/token", json={"email": "random-1@example.com", "password": "wrong-password-1"})
    async with app.state.instance.control.read() as conn:
        async with conn.execute("SELECT key FROM login_failures ORDER BY key") as cur:
            keys = [r[0] for r in await cur.fetchall()]
    assert "stale" not in keys and "stale-blocked-long-ago" not in keys
    assert {"recent", "still-blocked"} <= set(keys) and len(keys) == 3  # + the new random email's row
    assert keep >= cfg.login_max_backoff_seconds and keep >= 86400


async def test_token_response_is_a_bearer_hs256_jwt_with_jti(client, admin_token, app):
    resp = await client.post("/auth/token", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token_type"] == "bearer"
    assert isinstance(body["expires_in"], int) and body["expires_in"] > 0
    assert jwt.get_unverified_header(body["access_token"])["alg"] == "HS256"
    claims = jwt.decode(body["access_token"], app.state.instance.secrets.jwt_key, algorithms=["HS256"],
                        options={"verify_aud": False})
    assert claims["jti"] and claims["exp"] - claims["iat"] == body["expires_in"]
    schema = app.openapi_schema.to_schema()["components"]["schemas"]["AccessTokenResponse"]
    assert "token_type" in schema["required"]
