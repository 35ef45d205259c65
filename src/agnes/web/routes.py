"""Server-rendered pages. They call the same services as the API."""

from __future__ import annotations

from litestar import Request, get
from litestar.response import Redirect, Template

from agnes.api.deps import InstanceDep
from agnes.api.middleware import SETUP_ALLOWED


@get("/setup", include_in_schema=False, opt={SETUP_ALLOWED: True})
async def setup_page(request: Request, instance: InstanceDep) -> Template:
    settings = instance.settings
    base = f"{request.url.scheme}://{request.url.netloc}"
    return Template(
        template_name="setup.html",
        context={
            "setup_required": await instance.refresh_setup_required(),
            "base_url": base,
            "token_path": settings.state_dir / "setup-token",
            "min_password_length": settings.auth.min_password_length,
            "version": instance.build.version,
        },
    )


@get("/", include_in_schema=False, opt={SETUP_ALLOWED: True})
async def index(instance: InstanceDep) -> Redirect | Template:
    if await instance.refresh_setup_required():
        return Redirect("/setup")
    return Template(template_name="index.html", context={"version": instance.build.version})


ROUTES = [setup_page, index]
