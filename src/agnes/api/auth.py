"""Bootstrap of the first admin and password logins."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, post
from litestar.params import Body, HeaderParameter

from agnes.api.deps import ClientIp, InstanceDep
from agnes.api.errors import documented
from agnes.api.middleware import SETUP_ALLOWED
from agnes.api.schemas import STRICT, AccessTokenResponse, BootstrapRequest, BootstrapResponse, LoginRequest
from agnes.errors import AgnesError
from agnes.services import auth as auth_service
from agnes.services import setup as setup_service


class AuthController(Controller):
    path = "/auth"
    tags = ["auth"]
    security = [{}]

    @post(
        "/bootstrap",
        operation_id="bootstrap",
        summary="Create the first admin (needs the one-time setup token)",
        opt={SETUP_ALLOWED: True},
        responses=documented("validation_failed", "weak_password", "invalid_email", "invalid_setup_token",
                             "already_bootstrapped", "not_ready"),
    )
    async def bootstrap(
        self,
        instance: InstanceDep,
        ip: ClientIp,
        data: Annotated[BootstrapRequest, Body(schema_extra=STRICT)],
        x_setup_token: Annotated[str | None, HeaderParameter(name="X-Setup-Token", required=False)] = None,
    ) -> BootstrapResponse:
        token = data.setup_token or x_setup_token
        if not token:
            raise AgnesError("invalid_setup_token", "No setup token was sent (setup_token field or X-Setup-Token).")
        user, access = await setup_service.bootstrap(
            instance, email=data.email, password=data.password, setup_token=token, ip=ip
        )
        return BootstrapResponse(access_token=access.token, expires_in=access.expires_in, user=user,
                                 token_type="bearer")  # noqa: S106 — the OAuth token type, not a secret

    @post(
        "/token",
        operation_id="login",
        summary="Exchange email + password for a short-lived access token",
        status_code=200,
        responses=documented("validation_failed", "invalid_credentials", "too_many_attempts"),
    )
    async def token(
        self, instance: InstanceDep, ip: ClientIp, data: Annotated[LoginRequest, Body(schema_extra=STRICT)]
    ) -> AccessTokenResponse:
        _, access = await auth_service.login(instance, email=data.email, password=data.password, ip=ip)
        return AccessTokenResponse(access_token=access.token, expires_in=access.expires_in,
                                   token_type="bearer")  # noqa: S106 — the OAuth token type, not a secret
