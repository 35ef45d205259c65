"""GET /api/health — public; error messages only for authenticated admins."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.openapi.datastructures import ResponseSpec

from agnes.api.deps import InstanceDep
from agnes.api.middleware import SETUP_ALLOWED
from agnes.models import User
from agnes.services.health import HealthReport, health_report


@get(
    "/api/health",
    operation_id="getHealth",
    tags=["health"],
    summary="Instance health, version and diagnostics",
    security=[{}],
    opt={SETUP_ALLOWED: True},
    responses={503: ResponseSpec(data_container=HealthReport, description="Unhealthy: a check failed.")},
    cache_control=None,
)
async def get_health(request: Request[Any, Any, Any], instance: InstanceDep) -> Response[HealthReport]:
    user = request.scope.get("user")
    is_admin = isinstance(user, User) and user.role == "admin"
    report = await health_report(instance, include_messages=is_admin)
    return Response(report, status_code=503 if report.status == "unhealthy" else 200,
                    headers={"Cache-Control": "no-store"})
