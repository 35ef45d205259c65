"""Role guards: who may call a handler. Roles come fresh from the control plane."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from agnes.errors import AgnesError
from agnes.models import User

Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], None]
WWW_AUTHENTICATE = {"WWW-Authenticate": 'Bearer realm="agnes"'}


def current_user_or_raise(connection: ASGIConnection[Any, Any, Any, Any]) -> User:
    user = connection.scope.get("user")
    if isinstance(user, User):
        return user
    failure = connection.scope.get("auth")
    if isinstance(failure, AgnesError):
        raise failure
    raise AgnesError("not_authenticated", headers=WWW_AUTHENTICATE)


def requires(minimum: str) -> Guard:
    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        user = current_user_or_raise(connection)
        if not user.has_role(minimum):
            raise AgnesError("forbidden", f"This needs the {minimum} role or higher; your role is {user.role}.")

    guard.__name__ = f"requires_{minimum}"
    return guard


requires_viewer = requires("viewer")
requires_analyst = requires("analyst")
requires_admin = requires("admin")
