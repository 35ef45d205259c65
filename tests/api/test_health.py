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


async def _kill_control_plane(app, client) -> None:
    """Close the pool on the app's own event loop (its queue belongs to that loop); every later use raises
    "ControlPlane is closed", as a control plane that stopped answering would."""
    import asyncio

    await asyncio.to_thread(client.blocking_portal.call, app.state.instance.control.close)


async def test_dead_control_plane_is_503_without_raw_error_text_for_anonymous(app, client, admin_token):
    await _kill_control_plane(app, client)
    resp = await client.get("/api/health")
    assert resp.status_code == 503, resp.text
    body = resp.json()
    assert body["status"] == "unhealthy" and body["setup_required"] is False
    check = body["checks"]["control_plane"]
    assert check["status"] == "fail" and "unreachable" in check["detail"]
    assert "closed" not in check["detail"].lower() and "RuntimeError" not in check["detail"]  # no raw error
    assert "server log" in check["detail"]


async def test_dead_control_plane_in_setup_mode_is_503_not_500(app, client):
    """Setup mode re-reads the user count first; a dead control plane must still give the 503 report."""
    await _kill_control_plane(app, client)
    resp = await client.get("/api/health")
    assert resp.status_code == 503, resp.text
    body = resp.json()
    assert body["status"] == "unhealthy" and body["setup_required"] is True
    # whoever installs has no admin to ask: setup mode shows the error itself
    assert "ControlPlane is closed" in body["checks"]["control_plane"]["detail"]


async def test_unwritable_data_dir_is_unhealthy(app, client, admin_token, data_dir):
    import os
    import shutil

    state = app.state.instance.settings.state_dir
    moved = state.with_name("state.moved")
    if os.geteuid() != 0:
        state.chmod(0o500)  # no new files
    else:  # root writes through any mode: put a plain file where the folder was (open handles keep working)
        state.rename(moved)
        state.write_text("not a folder")
    try:
        resp = await client.get("/api/health")
    finally:
        if moved.exists():
            state.unlink()
            moved.rename(state)
        else:
            state.chmod(0o700)
    assert resp.status_code == 503, resp.text
    body = resp.json()
    assert body["status"] == "unhealthy"
    check = body["checks"]["data_dir"]
    assert check["status"] == "fail" and "not writable" in check["detail"]
    assert str(data_dir) not in check["detail"]  # no paths for anonymous callers
    assert body["checks"]["control_plane"]["status"] == "ok"
    assert (await client.get("/api/health")).status_code == 200  # restored
    assert shutil.disk_usage(data_dir)  # the volume itself is fine
