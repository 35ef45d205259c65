"""Refuse unknown and repeated query parameters instead of ignoring them.

`?dryrun=true` silently ignored would run the real thing; an agent must learn
of its typo. Likewise `?source=a&source=b` would silently use one of the two.
Handlers list their parameters in `opt={"query": (...)}` and add the
`known_query_only` guard.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from agnes.errors import AgnesError


def known_query_only(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    allowed = tuple(handler.opt.get("query", ()))
    params = connection.query_params
    unknown = sorted(set(params.keys()) - set(allowed))
    if unknown:
        listed = ", ".join(allowed) or "none"
        raise AgnesError("validation_failed", f"Unknown query parameter(s): {', '.join(map(repr, unknown))}.",
                         hint=f"This route accepts these query parameters: {listed} "
                              "(GET /schema/openapi.json lists them).")
    repeated = sorted(k for k in set(params.keys()) if len(params.getall(k)) > 1)
    if repeated:
        raise AgnesError("validation_failed", f"Query parameter(s) given more than once: {', '.join(repeated)}.",
                         hint="Send each query parameter once (GET /schema/openapi.json lists each route's "
                              "parameters).")
