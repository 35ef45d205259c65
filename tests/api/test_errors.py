"""Every failure, the framework's own included, has one shape with a hint."""


def assert_error(resp, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    err = body["error"]
    assert err["code"] == code and err["message"] and err["hint"], body
    assert body["status_code"] == status
    return err


async def test_unknown_route(client, admin_token, auth):
    assert_error(await client.get("/api/nope", headers=auth(admin_token)), 404, "not_found")


async def test_wrong_method_keeps_allow_header(client, admin_token, auth):
    resp = await client.put("/api/health")
    assert_error(resp, 405, "method_not_allowed")
    assert "GET" in resp.headers["allow"]


async def test_malformed_json(client, admin_token, auth):
    resp = await client.post("/api/users", content=b"{not json", headers={**auth(admin_token),
                                                                          "Content-Type": "application/json"})
    assert resp.status_code == 400 and resp.json()["error"]["code"] in ("validation_failed", "bad_request")


async def test_wrong_type_names_the_field(client, admin_token, auth):
    resp = await client.post("/api/tokens", json={"name": "x", "expires_in": "soon"}, headers=auth(admin_token))
    err = assert_error(resp, 400, "validation_failed")
    assert "expires_in" in err["message"]


async def test_non_int_path_parameter(client, admin_token, auth):
    assert_error(await client.get("/api/users/abc", headers=auth(admin_token)), 404, "not_found")


async def test_body_too_large(make_settings, data_dir):
    from litestar.testing import AsyncTestClient

    from agnes.app import create_app
    from tests.conftest import bootstrap

    async with AsyncTestClient(app=create_app(make_settings(AGNES_MAX_REQUEST_BODY_MB="1"))) as c:
        token = await bootstrap(c, data_dir)
        resp = await c.post("/api/tokens", content=b"x" * (2 * 1024 * 1024),
                            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert_error(resp, 413, "payload_too_large")


async def test_unexpected_errors_hide_details(client, admin_token, auth, app, monkeypatch):
    from agnes.services import users

    async def boom(*_a, **_k):
        raise RuntimeError("internal path /secret/thing")

    monkeypatch.setattr(users, "list_users", boom)
    resp = await client.get("/api/users", headers=auth(admin_token))
    err = assert_error(resp, 500, "internal_error")
    assert "/secret/thing" not in resp.text and "error id" in err["message"]


def test_every_catalogued_code_has_meaning_and_actionable_hint():
    from agnes.errors import CATALOG, AgnesError

    for code, spec in CATALOG.items():
        assert spec.meaning and spec.hint, code
        assert 400 <= spec.status < 600
        assert AgnesError(code).hint == spec.hint
    try:
        AgnesError("no_such_code")
    except KeyError as exc:
        assert "CATALOG" in str(exc)
    else:
        raise AssertionError("undeclared codes must fail")
