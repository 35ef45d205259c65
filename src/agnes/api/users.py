"""Admin user management and the caller's own identity."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, delete, get, patch, post
from litestar.params import Body

from agnes.api.deps import ClientIp, CurrentUser, InstanceDep
from agnes.api.errors import AUTH_ERRORS, documented
from agnes.api.guards import requires_admin, requires_viewer
from agnes.api.schemas import STRICT, CreateUserRequest, ItemList, RowId, UpdateUserRequest
from agnes.models import User
from agnes.services import users as users_service


class UsersController(Controller):
    path = "/api/users"
    tags = ["users"]
    guards = [requires_admin]

    @get(operation_id="listUsers", summary="List users", responses=documented(*AUTH_ERRORS))
    async def list_users(self, instance: InstanceDep) -> ItemList[User]:
        users = await users_service.list_users(instance)
        return ItemList(items=users, count=len(users))

    @post(
        operation_id="createUser",
        summary="Create a user",
        responses=documented(*AUTH_ERRORS, "validation_failed", "weak_password", "invalid_email", "invalid_role",
                             "user_exists"),
    )
    async def create_user(
        self,
        instance: InstanceDep,
        current_user: CurrentUser,
        ip: ClientIp,
        data: Annotated[CreateUserRequest, Body(schema_extra=STRICT)],
    ) -> User:
        return await users_service.create_user(
            instance, current_user, email=data.email, password=data.password, role=data.role, ip=ip
        )

    @get("/{user_id:int}", operation_id="getUser", summary="One user",
         responses=documented(*AUTH_ERRORS, "user_not_found"))
    async def get_user(self, instance: InstanceDep, user_id: RowId) -> User:
        return await users_service.get_user(instance, user_id)

    @patch(
        "/{user_id:int}",
        operation_id="updateUser",
        summary="Change a user's role, active flag or password",
        responses=documented(*AUTH_ERRORS, "validation_failed", "weak_password", "user_not_found", "last_admin",
                             "empty_update"),
    )
    async def update_user(
        self,
        instance: InstanceDep,
        current_user: CurrentUser,
        ip: ClientIp,
        user_id: RowId,
        data: Annotated[UpdateUserRequest, Body(schema_extra=STRICT)],
    ) -> User:
        return await users_service.update_user(
            instance, current_user, user_id, role=data.role, active=data.active, password=data.password, ip=ip
        )

    @delete("/{user_id:int}", operation_id="deleteUser", summary="Delete a user",
            responses=documented(*AUTH_ERRORS, "user_not_found", "last_admin"))
    async def delete_user(self, instance: InstanceDep, current_user: CurrentUser, ip: ClientIp, user_id: RowId) -> None:
        await users_service.delete_user(instance, current_user, user_id, ip=ip)


@get("/api/me", operation_id="getMe", tags=["users"], summary="The authenticated caller",
     guards=[requires_viewer], responses=documented(*AUTH_ERRORS))
async def get_me(current_user: CurrentUser) -> User:
    return current_user
