"""Setup mode: until the first admin exists, every route not marked
setup-allowed answers 503 with a hint. The route table is iterated, so a
route added later is covered without editing this test."""

import re

import pytest
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute

from agnes.api.middleware import SETUP_ALLOWED

ALLOWED_PUBLIC = {("GET", "/api/health"), ("POST", "/auth/bootstrap"), ("GET", "/setup"), ("GET", "/")}


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}:]+(:int)?\}", lambda m: "1" if m.group(1) else "x", re.sub(r"\{[^}]+:path\}", "agnes.css", path))


def _routes(app: Litestar) -> list[tuple[str, str, bool]]:
    found = []
    for route in app.routes:
        # Only HTTP routes are checked below, so nothing else may exist: a websocket or a mounted ASGI app
        # would slip past the lockdown test. One added later must get its own setup-mode check first.
        assert isinstance(route, HTTPRoute), f"{type(route).__name__} {route.path}: not covered by this test"
        for handler in route.route_handlers:
            assert isinstance(handler, HTTPRouteHandler), f"{type(handler).__name__} on {route.path}"
            for method in handler.http_methods:
                if method in ("HEAD", "OPTIONS"):
                    continue
                found.append((method, route.path, bool(handler.opt.get(SETUP_ALLOWED))))
    return found


async def test_every_route_not_marked_is_locked_in_setup_mode(app, client):
    routes = _routes(app)
    locked = [(m, p) for m, p, allowed in routes if not allowed]
    assert len(locked) >= 8, locked  # users, tokens, me … are all there
    for method, path in locked:
        resp = await client.request(method, _concrete(path), json={})
        assert resp.status_code == 503, (method, path, resp.status_code, resp.text)
        err = resp.json()["error"]
        assert err["code"] == "setup_required"
        assert "/auth/bootstrap" in err["hint"] and "agnes setup-token" in err["hint"]


@pytest.mark.parametrize("kind", ["websocket", "asgi"])
def test_a_route_of_another_kind_cannot_slip_past_the_lockdown_test(make_settings, kind):
    from litestar import WebSocket, asgi, websocket
    from litestar.types import Receive, Scope, Send

    from agnes.app import create_app

    app = create_app(make_settings())
    assert _routes(app)
    if kind == "websocket":
        @websocket("/ws/sneaky")
        async def sneaky(socket: WebSocket) -> None:  # pragma: no cover - never connected
            await socket.close()
    else:
        @asgi("/mounted/sneaky", is_mount=True, copy_scope=True)
        async def sneaky(scope: Scope, receive: Receive, send: Send) -> None:  # pragma: no cover - never called
            return None
    app.register(sneaky)
    with pytest.raises(AssertionError, match="sneaky"):
        _routes(app)


async def test_the_allowed_set_is_exactly_what_setup_needs(app):
    allowed = {(m, p) for m, p, ok in _routes(app) if ok}
    schema_and_static = {(m, p) for m, p in allowed if p.startswith(("/schema", "/static"))}
    assert allowed - schema_and_static == ALLOWED_PUBLIC
    assert any(p.startswith("/schema") for _, p in schema_and_static)


@pytest.mark.parametrize("path", ["/api/health", "/setup", "/schema/openapi.json", "/static/agnes.css"])
async def test_setup_routes_answer(client, path):
    resp = await client.get(path)
    assert resp.status_code == 200, resp.text


async def test_setup_page_explains_headless_bootstrap(client):
    page = (await client.get("/setup")).text
    assert "agnes setup-token" in page and "/auth/bootstrap" in page and "curl" in page
    root = await client.get("/", follow_redirects=False)
    assert root.status_code in (301, 302, 303, 307) and root.headers["location"] == "/setup"


async def test_lock_lifts_after_bootstrap(client, admin_token, auth):
    assert (await client.get("/api/users", headers=auth(admin_token))).status_code == 200
    assert (await client.get("/api/users")).status_code == 401
