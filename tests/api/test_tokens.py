from tests.conftest import create_user, login


async def test_api_token_lifecycle(client, admin_token, auth, app):
    created = await client.post("/api/tokens", json={"name": "ci-agent"}, headers=auth(admin_token))
    assert created.status_code == 201, created.text
    body = created.json()
    plaintext = body["token"]
    assert plaintext.startswith(body["prefix"]) and len(plaintext) > 30
    # Usable as a bearer token.
    assert (await client.get("/api/me", headers=auth(plaintext))).status_code == 200
    # Listed without the secret.
    listed = (await client.get("/api/tokens", headers=auth(admin_token))).json()
    assert listed["count"] == 1 and plaintext not in str(listed)
    # Stored hashed only.
    async with app.state.instance.control.read() as conn:
        async with conn.execute("SELECT token_hash FROM api_tokens") as cur:
            stored = [r[0] for r in await cur.fetchall()]
    assert plaintext not in stored and len(stored) == 1
    revoked = await client.delete(f"/api/tokens/{body['id']}", headers=auth(admin_token))
    assert revoked.status_code == 204
    after = await client.get("/api/me", headers=auth(plaintext))
    assert after.status_code == 401 and after.json()["error"]["code"] == "invalid_token"
    again = await client.delete(f"/api/tokens/{body['id']}", headers=auth(admin_token))
    assert again.status_code == 404 and again.json()["error"]["code"] == "token_not_found"


async def test_expired_api_token_is_rejected(client, admin_token, auth, app):
    created = (await client.post("/api/tokens", json={"name": "short", "expires_in": 60},
                                 headers=auth(admin_token))).json()
    assert created["expires_at"]
    async with app.state.instance.control.transaction() as conn:
        await conn.execute("UPDATE api_tokens SET expires_at = '2000-01-01T00:00:00.000Z'")
    assert (await client.get("/api/me", headers=auth(created["token"]))).status_code == 401


async def test_tokens_are_per_user_and_need_analyst(client, admin_token, auth):
    await create_user(client, admin_token, "ana@example.com", "analyst")
    await create_user(client, admin_token, "vic@example.com", "viewer")
    ana = await login(client, "ana@example.com", "another-long-passphrase")
    vic = await login(client, "vic@example.com", "another-long-passphrase")
    mine = (await client.post("/api/tokens", json={"name": "laptop"}, headers=auth(ana))).json()
    assert (await client.get("/api/tokens", headers=auth(admin_token))).json()["count"] == 0
    stolen = await client.delete(f"/api/tokens/{mine['id']}", headers=auth(admin_token))
    assert stolen.status_code == 404
    denied = await client.post("/api/tokens", json={"name": "x"}, headers=auth(vic))
    assert denied.status_code == 403


async def test_token_creation_is_audited(client, admin_token, auth, app):
    created = (await client.post("/api/tokens", json={"name": "x"}, headers=auth(admin_token))).json()
    await client.delete(f"/api/tokens/{created['id']}", headers=auth(admin_token))
    async with app.state.instance.control.read() as conn:
        async with conn.execute("SELECT action, detail FROM audit_log WHERE action LIKE 'token_%'") as cur:
            rows = [tuple(r) for r in await cur.fetchall()]
    assert [r[0] for r in rows] == ["token_created", "token_revoked"]
    assert created["token"] not in str(rows)
