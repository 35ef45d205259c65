"""User administration with the rule that an instance never loses its last admin."""

from __future__ import annotations

import asyncio

import aiosqlite

from agnes.control import audit
from agnes.control import users as users_repo
from agnes.errors import AgnesError
from agnes.models import ROLES, User
from agnes.security.passwords import check_password_policy, hash_password, validate_email
from agnes.services.instance import Instance


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise AgnesError("invalid_role", f"Role {role!r} is not one of: {', '.join(ROLES)}.")
    return role


async def list_users(instance: Instance) -> list[User]:
    async with instance.control.read() as conn:
        return await users_repo.list_all(conn)


async def get_user(instance: Instance, user_id: int) -> User:
    async with instance.control.read() as conn:
        user = await users_repo.get(conn, user_id)
    if user is None:
        raise AgnesError("user_not_found", f"No user has id {user_id}.")
    return user


async def create_user(
    instance: Instance, actor: User, *, email: str, password: str, role: str, ip: str | None = None
) -> User:
    email = validate_email(email)
    _check_role(role)
    check_password_policy(password, min_length=instance.settings.auth.min_password_length, email=email)
    password_hash = await asyncio.to_thread(hash_password, password)
    async with instance.control.transaction() as conn:
        if await users_repo.get_by_email(conn, email) is not None:
            raise AgnesError("user_exists", f"A user with email {email} already exists.")
        user = await users_repo.create(conn, email=email, password_hash=password_hash, role=role)
        await audit.record(conn, action="user_created", actor=actor.email, actor_user_id=actor.id,
                           target=f"user:{user.id}", detail={"email": email, "role": role}, ip=ip)
    return user


async def _guard_last_admin(conn: aiosqlite.Connection, target: User, *, losing_admin: bool) -> None:
    if losing_admin and target.role == "admin" and target.active and await users_repo.count_active_admins(conn) <= 1:
        raise AgnesError(
            "last_admin", f"{target.email} is the last active admin; this change would leave no admin."
        )


async def update_user(
    instance: Instance,
    actor: User | None,
    user_id: int,
    *,
    role: str | None = None,
    active: bool | None = None,
    password: str | None = None,
    ip: str | None = None,
) -> User:
    """Change role, active flag or password; `actor=None` means the server-side CLI."""
    if role is None and active is None and password is None:
        raise AgnesError("empty_update", "Send at least one of: role, active, password.")
    if role is not None:
        _check_role(role)
    password_hash = None
    if password is not None:
        async with instance.control.read() as conn:
            target = await users_repo.get(conn, user_id)
        check_password_policy(password, min_length=instance.settings.auth.min_password_length,
                              email=target.email if target else None)
        password_hash = await asyncio.to_thread(hash_password, password)
    async with instance.control.transaction() as conn:
        target = await users_repo.get(conn, user_id)
        if target is None:
            raise AgnesError("user_not_found", f"No user has id {user_id}.")
        losing = (role is not None and role != "admin") or active is False
        await _guard_last_admin(conn, target, losing_admin=losing)
        updated = await users_repo.update(conn, user_id, role=role, active=active, password_hash=password_hash)
        assert updated is not None
        changes: dict[str, object] = {}
        if role is not None:
            changes["role"] = role
        if active is not None:
            changes["active"] = active
        if password is not None:
            changes["password"] = "changed"  # noqa: S105 — an audit marker, not a secret
        await audit.record(conn, action="user_updated", actor=actor.email if actor else "cli",
                           actor_user_id=actor.id if actor else None, target=f"user:{user_id}",
                           detail=changes, ip=ip)
    return updated


async def delete_user(instance: Instance, actor: User, user_id: int, *, ip: str | None = None) -> None:
    async with instance.control.transaction() as conn:
        target = await users_repo.get(conn, user_id)
        if target is None:
            raise AgnesError("user_not_found", f"No user has id {user_id}.")
        await _guard_last_admin(conn, target, losing_admin=True)
        await users_repo.delete(conn, user_id)
        await audit.record(conn, action="user_deleted", actor=actor.email, actor_user_id=actor.id,
                           target=f"user:{user_id}", detail={"email": target.email}, ip=ip)


async def reset_password(instance: Instance, email: str, password: str) -> User:
    """Server-side recovery for a locked-out admin (`agnes users reset-password`)."""
    async with instance.control.read() as conn:
        target = await users_repo.get_by_email(conn, email.strip())
    if target is None:
        raise AgnesError("user_not_found", f"No user has email {email}.")
    return await update_user(instance, None, target.id, password=password, active=True)
