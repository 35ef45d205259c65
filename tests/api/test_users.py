from agnes.control import audit
from tests.conftest import create_user, login


async def test_user_lifecycle(client, admin_token, auth, app):
    h = auth(admin_token)
    user = await create_user(client, admin_token, "Viewer@Example.com", "viewer")
    assert user["email"] == "viewer@example.com" and user["role"] == "viewer" and user["active"] is True
    assert "password" not in str(user) and "hash" not in str(user)
    listed = (await client.get("/api/users", headers=h)).json()
    assert listed["count"] == 2 and [u["email"] for u in listed["items"]][1] == "viewer@example.com"
    assert (await client.get(f"/api/users/{user['id']}", headers=h)).json()["email"] == "viewer@example.com"
    dup = await client.post("/api/users", json={"email": "viewer@example.com", "password": "long-enough-pass",
                                                 "role": "viewer"}, headers=h)
    assert dup.status_code == 409 and dup.json()["error"]["code"] == "user_exists"
    changed = await client.patch(f"/api/users/{user['id']}", json={"password": "a-brand-new-passphrase"}, headers=h)
    assert changed.status_code == 200
    assert await login(client, "viewer@example.com", "a-brand-new-passphrase")
    deleted = await client.delete(f"/api/users/{user['id']}", headers=h)
    assert deleted.status_code == 204
    missing = await client.get(f"/api/users/{user['id']}", headers=h)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "user_not_found"
    async with app.state.instance.control.read() as conn:
        async with conn.execute("SELECT action FROM audit_log WHERE action LIKE 'user_%' ORDER BY id") as cur:
            assert [r[0] for r in await cur.fetchall()] == ["user_created", "user_updated", "user_deleted"]


async def test_last_active_admin_is_protected(client, admin_token, auth):
    h = auth(admin_token)
    me = (await client.get("/api/me", headers=h)).json()
    for attempt in (
        client.delete(f"/api/users/{me['id']}", headers=h),
        client.patch(f"/api/users/{me['id']}", json={"active": False}, headers=h),
        client.patch(f"/api/users/{me['id']}", json={"role": "viewer"}, headers=h),
    ):
        resp = await attempt
        assert resp.status_code == 409, resp.text
        assert resp.json()["error"]["code"] == "last_admin"
        assert "POST /api/users" in resp.json()["error"]["hint"]
    # With a second active admin, the first may step down.
    await create_user(client, admin_token, "second@example.com", "admin")
    assert (await client.patch(f"/api/users/{me['id']}", json={"role": "analyst"}, headers=h)).status_code == 200


async def test_inactive_admin_does_not_count(client, admin_token, auth):
    h = auth(admin_token)
    other = await create_user(client, admin_token, "second@example.com", "admin")
    assert (await client.patch(f"/api/users/{other['id']}", json={"active": False}, headers=h)).status_code == 200
    me = (await client.get("/api/me", headers=h)).json()
    assert (await client.delete(f"/api/users/{me['id']}", headers=h)).status_code == 409


async def test_bad_input_is_explained(client, admin_token, auth):
    h = auth(admin_token)
    cases = [
        ({"email": "not-an-email", "password": "long-enough-pass", "role": "viewer"}, 400, "invalid_email"),
        ({"email": "a@example.com", "password": "short", "role": "viewer"}, 400, "weak_password"),
        ({"email": "a@example.com", "password": "long-enough-pass", "role": "owner"}, 400, "validation_failed"),
        ({"email": "a@example.com", "password": "long-enough-pass", "colour": "red"}, 400, "validation_failed"),
        ({"email": 5, "password": "long-enough-pass"}, 400, "validation_failed"),
    ]
    for body, status, code in cases:
        resp = await client.post("/api/users", json=body, headers=h)
        assert resp.status_code == status, (body, resp.text)
        err = resp.json()["error"]
        assert err["code"] == code, (body, err)
        assert err["hint"]
    unknown = await client.post("/api/users", json=cases[3][0], headers=h)
    assert "colour" in unknown.json()["error"]["message"]
    empty = await client.patch("/api/users/1", json={}, headers=h)
    assert empty.status_code == 400 and empty.json()["error"]["code"] == "empty_update"


async def test_non_admins_cannot_manage_users(client, admin_token, auth):
    await create_user(client, admin_token, "ana@example.com", "analyst")
    token = await login(client, "ana@example.com", "another-long-passphrase")
    resp = await client.post("/api/users", json={"email": "x@example.com", "password": "long-enough-pass"},
                             headers=auth(token))
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "forbidden"
    assert "admin" in resp.json()["error"]["message"]


async def test_role_change_and_deactivation_are_audited(client, admin_token, auth, app):
    h = auth(admin_token)
    me = (await client.get("/api/me", headers=h)).json()
    user = await create_user(client, admin_token, "ana@example.com", "analyst")
    assert (await client.patch(f"/api/users/{user['id']}", json={"role": "admin"}, headers=h)).status_code == 200
    assert (await client.patch(f"/api/users/{user['id']}", json={"active": False}, headers=h)).status_code == 200
    async with app.state.instance.control.read() as conn:
        entries = await audit.recent(conn, action="user_updated")
    got = [(e["actor"], e["actor_user_id"], e["target"], e["detail"]) for e in reversed(entries)]
    assert got == [
        (me["email"], me["id"], f"user:{user['id']}", {"role": "admin"}),
        (me["email"], me["id"], f"user:{user['id']}", {"active": False}),
    ]
