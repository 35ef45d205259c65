from tests.conftest import create_user, login

REQUIRED = {"status", "setup_required", "version", "channel", "commit", "schema_version", "checks", "warnings",
            "errors"}


async def test_health_shape(client, admin_token):
    body = (await client.get("/api/health")).json()
    assert REQUIRED <= body.keys()
    assert body["status"] == "healthy"
    assert body["schema_version"] >= 1
    for name in ("control_plane", "data_dir", "disk"):
        assert body["checks"][name]["status"] == "ok", body["checks"]
        assert body["checks"][name]["detail"]
    assert body["errors"] == [] and body["warnings"] == []


async def test_build_info_comes_from_the_image(make_settings):
    from litestar.testing import AsyncTestClient

    from agnes.app import create_app

    settings = make_settings(AGNES_VERSION="2026.04.3", AGNES_CHANNEL="stable", AGNES_COMMIT="abc1234")
    async with AsyncTestClient(app=create_app(settings)) as c:
        body = (await c.get("/api/health")).json()
    assert (body["version"], body["channel"], body["commit"]) == ("2026.04.3", "stable", "abc1234")


async def test_error_messages_only_for_admins(client, admin_token, auth, app):
    from agnes.control import health_errors

    async with app.state.instance.control.transaction() as conn:
        err_id = await health_errors.raise_error(conn, code="sync_failed", source="sample",
                                                 message="secret detail: /data/extracts/sample")
    anon = (await client.get("/api/health")).json()
    assert anon["status"] == "degraded"
    assert anon["errors"] == [{"id": err_id, "at": anon["errors"][0]["at"], "code": "sync_failed", "source": "sample"}]
    await create_user(client, admin_token, "vic@example.com", "viewer")
    viewer = await login(client, "vic@example.com", "another-long-passphrase")
    assert "message" not in (await client.get("/api/health", headers=auth(viewer))).json()["errors"][0]
    admin_view = (await client.get("/api/health", headers=auth(admin_token))).json()
    assert admin_view["errors"][0]["message"] == "secret detail: /data/extracts/sample"
    async with app.state.instance.control.transaction() as conn:
        await health_errors.resolve(conn, source="sample")
    assert (await client.get("/api/health")).json()["status"] == "healthy"


async def test_unhealthy_answers_503(make_settings):
    from litestar.testing import AsyncTestClient

    from agnes.app import create_app

    app = create_app(make_settings(AGNES_DISK_FAIL_FREE_MB=str(10**12), AGNES_DISK_WARN_FREE_MB=str(10**12)))
    async with AsyncTestClient(app=app) as c:
        resp = await c.get("/api/health")
    assert resp.status_code == 503
    body = resp.json()
    assert body["status"] == "unhealthy" and body["checks"]["disk"]["status"] == "fail"
    assert "free space" in body["checks"]["disk"]["detail"]


async def test_low_disk_degrades(make_settings):
    from litestar.testing import AsyncTestClient

    from agnes.app import create_app

    app = create_app(make_settings(AGNES_DISK_WARN_FREE_MB=str(10**12)))
    async with AsyncTestClient(app=app) as c:
        body = (await c.get("/api/health")).json()
    assert body["status"] == "degraded" and body["checks"]["disk"]["status"] == "warn"


async def test_unknown_config_key_is_a_warning(make_settings, data_dir):
    from litestar.testing import AsyncTestClient

    from agnes.app import create_app

    cfg = data_dir / "config"
    cfg.mkdir(exist_ok=True)
    (cfg / "instance.yaml").write_text("server:\n  port: 8000\n  future_option: true\n")
    async with AsyncTestClient(app=create_app(make_settings())) as c:
        body = (await c.get("/api/health")).json()
    assert any("future_option" in w for w in body["warnings"]), body["warnings"]
