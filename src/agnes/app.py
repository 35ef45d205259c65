"""Application factory: `create_app(settings)` builds the Litestar app; its
lifespan prepares the instance (migrations, secrets, setup token) before the
first request is served."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from litestar import Litestar, Router
from litestar.logging.config import LoggingConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.jinja import JinjaTemplateEngine as Jinja
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from agnes.api.auth import AuthController
from agnes.api.deps import DEPENDENCIES
from agnes.api.errors import EXCEPTION_HANDLERS
from agnes.api.health import get_health
from agnes.api.middleware import SETUP_ALLOWED, GateMiddleware, SecureCookiesMiddleware
from agnes.api.serving_routes import SERVING_HANDLERS
from agnes.api.sources import SourcesController
from agnes.api.sync import SyncController
from agnes.api.tables import TablesController
from agnes.api.tokens import TokensController
from agnes.api.uploads import uploads_router
from agnes.api.users import UsersController, get_me
from agnes.jobs.runtime import start_job_runtime
from agnes.services.inbox import inbox_loop
from agnes.services.instance import start_instance
from agnes.services.query import create_executor
from agnes.services.releases import release_notice_loop
from agnes.services.serving import CatalogService
from agnes.settings import Settings
from agnes.version import __version__
from agnes.web.routes import ROUTES as WEB_ROUTES

WEB_DIR = Path(__file__).parent / "web"
API_HANDLERS = [get_health, AuthController, UsersController, get_me, TokensController, SyncController,
                SourcesController, TablesController, *SERVING_HANDLERS]


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Agnes",
        version=__version__,
        description="Self-hosted data platform for AI analysts. Errors: {error: {code, message, hint}}.",
        path="/schema",
        components=Components(
            security_schemes={
                "bearer": SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description="A JWT from POST /auth/token or a long-lived API token from POST /api/tokens.",
                )
            }
        ),
        security=[{"bearer": []}],
        openapi_router=Router(path="/schema", route_handlers=[], opt={SETUP_ALLOWED: True}, include_in_schema=False),
    )


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings.load()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        instance = await start_instance(settings)
        app.state.instance = instance
        serving = CatalogService(instance)
        instance.serving = serving
        instance.query = create_executor(instance)  # the ONE query executor of this process
        serving.start()  # first load in the background: the server answers while it builds
        try:
            jobs = await start_job_runtime(instance)
        except BaseException:
            instance.query.close()
            await serving.stop()
            await instance.close()
            raise
        inbox = asyncio.create_task(inbox_loop(instance), name="agnes-inbox")
        releases = asyncio.create_task(release_notice_loop(instance), name="agnes-release-notices")
        try:
            yield
        finally:
            for task in (releases, inbox):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await jobs.stop()  # running in-process jobs end `cancelled`, never left running
            instance.query.close()
            await serving.stop()
            await instance.close()

    static = create_static_files_router(
        path="/static", directories=[WEB_DIR / "static"], opt={SETUP_ALLOWED: True}, include_in_schema=False
    )
    return Litestar(
        route_handlers=[*API_HANDLERS, uploads_router(settings), *WEB_ROUTES, static],  # uploads: own size limit
        dependencies=DEPENDENCIES,
        middleware=[SecureCookiesMiddleware(), GateMiddleware()],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        openapi_config=openapi_config(),
        template_config=TemplateConfig(directory=WEB_DIR / "templates", engine=Jinja),
        request_max_body_size=settings.server.max_request_body_mb * 1024 * 1024,
        # The root logger belongs to `agnes serve` (AGNES_LOG_LEVEL); Litestar's default would reset it to INFO.
        logging_config=LoggingConfig(configure_root_logger=False, log_exceptions="never"),
    )
