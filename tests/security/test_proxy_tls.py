"""Behind Caddy: client IPs from X-Forwarded-For only via trusted proxies; cookies Secure under TLS."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from litestar import Response, get
from litestar.datastructures import Cookie
from litestar.testing import AsyncTestClient

from agnes.api.middleware import SETUP_ALLOWED
from agnes.app import create_app
from agnes.security.client_ip import client_ip, is_https
from agnes.settings import Settings


def test_client_ip_trusts_forwarded_for_only_from_proxies():
    xff = "203.0.113.9, 172.30.0.10"
    assert client_ip("172.30.0.10", "203.0.113.9", ["172.30.0.10"]) == "203.0.113.9"
    assert client_ip("198.51.100.7", "203.0.113.9", ["172.30.0.10"]) == "198.51.100.7"  # spoofed header ignored
    assert client_ip("172.30.0.10", "203.0.113.9", []) == "172.30.0.10"
    assert client_ip("172.30.0.10", xff, ["172.30.0.0/24"]) == "203.0.113.9"  # proxy hops skipped
    assert client_ip("172.30.0.10", "1.2.3.4, 203.0.113.9", ["172.30.0.0/24"]) == "203.0.113.9"  # spoof left of it
    assert client_ip("10.1.1.1", "203.0.113.9", ["*"]) == "203.0.113.9"  # '*' is accepted by settings
    assert client_ip("10.1.1.1", "garbage", ["10.0.0.0/8"]) == "garbage"


def test_is_https():
    assert is_https("https", "198.51.100.7", None, [])
    assert is_https("http", "172.30.0.10", "https", ["172.30.0.10"])
    assert is_https("http", "172.30.0.10", "https, http", ["172.30.0.0/24"])
    assert not is_https("http", "198.51.100.7", "https", ["172.30.0.10"])  # an untrusted client cannot claim TLS
    assert not is_https("http", "172.30.0.10", "http", ["172.30.0.10"])
    assert not is_https("http", None, "https", ["*"])


@get("/test/cookie", opt={SETUP_ALLOWED: True}, include_in_schema=False, sync_to_thread=False)
def set_cookie() -> Response[str]:
    return Response("ok", cookies=[Cookie(key="session", value="secure-looking-value", httponly=True),
                                   Cookie(key="already", value="x", secure=True)])


@pytest.fixture
def app_with(make_settings: Callable[..., Settings]):
    def make(**env: str):
        app = create_app(make_settings(**env))
        app.register(set_cookie)
        return app
    return make


def set_cookies(resp) -> list[str]:
    return resp.headers.get_list("set-cookie")


async def test_cookies_are_secure_behind_a_trusted_tls_proxy(app_with):
    async with AsyncTestClient(app_with(AGNES_TRUSTED_PROXIES="*")) as client:
        behind_tls = await client.get("/test/cookie", headers={"X-Forwarded-Proto": "https"})
        plain = await client.get("/test/cookie")
    assert all(c.lower().count("; secure") == 1 for c in set_cookies(behind_tls))
    session = next(c for c in set_cookies(plain) if c.startswith("session="))
    assert "secure" not in session.lower().split("=", 1)[1].replace("secure-looking", "")


async def test_untrusted_forwarded_proto_does_not_count_but_real_tls_does(app_with):
    app = app_with()
    async with AsyncTestClient(app) as client:
        spoofed = await client.get("/test/cookie", headers={"X-Forwarded-Proto": "https"})
    session = next(c for c in set_cookies(spoofed) if c.startswith("session="))
    assert "; secure" not in session.lower()
    async with AsyncTestClient(app, base_url="https://testserver.local") as client:
        direct = await client.get("/test/cookie")
    assert all("; secure" in c.lower() for c in set_cookies(direct))


def test_every_forwarded_for_line_counts(make_settings):
    """A proxy that adds its own X-Forwarded-For line (HAProxy's `option forwardfor`) instead of
    appending leaves the client's forged line first: reading only that line would trust the forgery."""
    from types import SimpleNamespace

    from litestar.connection import Request

    from agnes.api.deps import provide_client_ip

    settings = make_settings(AGNES_TRUSTED_PROXIES="172.30.0.10")
    app = SimpleNamespace(state=SimpleNamespace(instance=SimpleNamespace(settings=settings)))
    scope = {"type": "http", "method": "GET", "path": "/", "query_string": b"", "litestar_app": app,
             "client": ("172.30.0.10", 5000),
             "headers": [(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-for", b"203.0.113.9")]}
    assert provide_client_ip(Request(scope)) == "203.0.113.9"  # type: ignore[arg-type]


def test_ipv4_mapped_proxy_addresses_are_trusted():
    """Bound to `::`, the proxy's IPv4 address arrives as ::ffff:a.b.c.d."""
    assert client_ip("::ffff:172.30.0.10", "203.0.113.9", ["172.30.0.10"]) == "203.0.113.9"
    assert client_ip("::ffff:198.51.100.7", "203.0.113.9", ["172.30.0.10"]) == "::ffff:198.51.100.7"
    assert is_https("http", "::ffff:172.30.0.10", "https", ["172.30.0.0/24"])
