"""Per-request gate: setup-mode lockdown, then bearer authentication.

Handlers that must answer before the first admin exists carry
`opt={"setup_allowed": True}`; everything else answers 503 `setup_required`
until bootstrap. Authentication never fails the request here: the outcome is
left in the scope and the handler's guard decides, so public routes (health)
ignore a stale token instead of refusing.
"""

from __future__ import annotations

from typing import Any

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from agnes.api.errors import error_response
from agnes.api.guards import WWW_AUTHENTICATE
from agnes.errors import AgnesError
from agnes.security.client_ip import is_https
from agnes.services.auth import authenticate
from agnes.services.instance import Instance

SETUP_ALLOWED = "setup_allowed"


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            return value.decode("latin-1").strip()
    return None


class GateMiddleware(ASGIMiddleware):
    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        instance: Instance = scope["litestar_app"].state.instance
        handler: Any = scope.get("route_handler")
        allowed = bool(handler is not None and handler.opt.get(SETUP_ALLOWED))
        if instance.setup_required and not allowed and await instance.refresh_setup_required():
            response = error_response(AgnesError("setup_required"))
            await response.to_asgi_response(app=None, request=None)(scope, receive, send)  # type: ignore[arg-type]
            return
        scope["user"] = None
        scope["auth"] = None
        header = _bearer(scope)
        if header:
            scheme, _, credential = header.partition(" ")
            if scheme.lower() != "bearer" or not credential.strip():
                scope["auth"] = AgnesError(
                    "invalid_token", "The Authorization header must be 'Bearer <token>'.", headers=WWW_AUTHENTICATE
                )
            else:
                try:
                    scope["user"] = await authenticate(instance, credential.strip())
                except AgnesError as exc:
                    exc.headers = {**exc.headers, **WWW_AUTHENTICATE}
                    scope["auth"] = exc
        await next_app(scope, receive, send)


def _header(scope: Scope, name: bytes) -> str | None:
    """All lines of a header joined with "," (RFC 9110), as if sent on one line."""
    values = [value.decode("latin-1") for key, value in scope.get("headers", []) if key == name]
    return ",".join(values) if values else None


def _has_secure(cookie: bytes) -> bool:
    return any(part.strip().lower() == b"secure" for part in cookie.split(b";")[1:])


class SecureCookiesMiddleware(ASGIMiddleware):
    """Every cookie set on a request that reached the client over TLS gets `Secure`.

    Behind Caddy the app itself speaks plain HTTP, so this is decided from
    X-Forwarded-Proto - believed only from trusted proxies. Done once here so
    no cookie (session, CSRF, any later one) can forget it.
    """

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        instance: Instance | None = getattr(scope["litestar_app"].state, "instance", None)
        trusted = instance.settings.server.trusted_proxies if instance is not None else ()
        client = scope.get("client")
        if not is_https(scope.get("scheme", "http"), client[0] if client else None,
                        _header(scope, b"x-forwarded-proto"), trusted):
            await next_app(scope, receive, send)
            return

        async def send_secure(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    (k, v + b"; Secure") if k.lower() == b"set-cookie" and not _has_secure(v) else (k, v)
                    for k, v in message.get("headers", [])
                ]
            await send(message)

        await next_app(scope, receive, send_secure)
