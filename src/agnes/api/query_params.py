"""Refuse unknown query parameters instead of ignoring them.

`?dryrun=true` silently ignored would run the real thing; an agent must learn
of its typo. Handlers list their parameters in `opt={"query": (...)}` and
add the `known_query_only` guard.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from agnes.errors import AgnesError


def known_query_only(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    allowed = tuple(handler.opt.get("query", ()))
    unknown = sorted(set(connection.query_params.keys()) - set(allowed))
    if unknown:
        listed = ", ".join(allowed) or "none"
        raise AgnesError("validation_failed", f"Unknown query parameter(s): {', '.join(map(repr, unknown))}.",
                         hint=f"This route accepts these query parameters: {listed}.")
