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
