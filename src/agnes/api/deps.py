"""Dependency providers shared by API controllers and web pages."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.di import NamedDependency, Provide

from agnes.models import User
from agnes.security.client_ip import client_ip
from agnes.services.instance import Instance


def provide_instance(request: Request[Any, Any, Any]) -> Instance:
    return request.app.state.instance


def provide_current_user(request: Request[Any, Any, Any]) -> User:
    from agnes.api.guards import current_user_or_raise

    return current_user_or_raise(request)


def provide_client_ip(request: Request[Any, Any, Any]) -> str | None:
    instance: Instance = request.app.state.instance
    peer = request.client.host if request.client else None
    # Every line: a proxy that adds its own X-Forwarded-For line (instead of appending) leaves the
    # client's forged line first, and reading only that one would trust it.
    forwarded = ",".join(request.headers.getall("x-forwarded-for", [])) or None
    return client_ip(peer, forwarded, instance.settings.server.trusted_proxies)


DEPENDENCIES = {
    "instance": Provide(provide_instance, sync_to_thread=False),
    "current_user": Provide(provide_current_user, sync_to_thread=False),
    "ip": Provide(provide_client_ip, sync_to_thread=False),
}

# Explicit dependency markers (Litestar 2.x style; inferred dependencies go away in 3.0).
InstanceDep = NamedDependency[Instance]
CurrentUser = NamedDependency[User]
ClientIp = NamedDependency[str | None]
