"""The caller's own long-lived API tokens."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, delete, get, post
from litestar.params import Body

from agnes.api.deps import ClientIp, CurrentUser, InstanceDep
from agnes.api.errors import AUTH_ERRORS, documented
from agnes.api.guards import requires_analyst
from agnes.api.schemas import STRICT, CreatedToken, CreateTokenRequest, ItemList, RowId, created_token
from agnes.models import ApiToken
from agnes.services import tokens as tokens_service


class TokensController(Controller):
    path = "/api/tokens"
    tags = ["tokens"]
    guards = [requires_analyst]

    @get(operation_id="listTokens", summary="Your active API tokens (never the secret)",
         responses=documented(*AUTH_ERRORS))
    async def list_tokens(self, instance: InstanceDep, current_user: CurrentUser) -> ItemList[ApiToken]:
        tokens = await tokens_service.list_tokens(instance, current_user)
        return ItemList(items=tokens, count=len(tokens))

    @post(operation_id="createToken", summary="Create an API token; the secret is shown once",
          responses=documented(*AUTH_ERRORS, "validation_failed"))
    async def create_token(
        self,
        instance: InstanceDep,
        current_user: CurrentUser,
        ip: ClientIp,
        data: Annotated[CreateTokenRequest, Body(schema_extra=STRICT)],
    ) -> CreatedToken:
        record, plaintext = await tokens_service.create_token(
            instance, current_user, name=data.name, expires_in=data.expires_in, ip=ip
        )
        return created_token(record, plaintext)

    @delete("/{token_id:int}", operation_id="revokeToken", summary="Revoke one of your API tokens",
            responses=documented(*AUTH_ERRORS, "token_not_found"))
    async def revoke_token(
        self, instance: InstanceDep, current_user: CurrentUser, ip: ClientIp, token_id: RowId
    ) -> None:
        await tokens_service.revoke_token(instance, current_user, token_id, ip=ip)
