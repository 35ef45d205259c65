"""Grant, revoke and list `read` grants; every change is audited.

A target is `<source>.<table>` or `<source>.*`. The source must exist and a
table target must be registered or served, so a typo is refused instead of
silently granting nothing. Granting twice is not an error (`created: false`).
"""

from __future__ import annotations

import re

import aiosqlite
import msgspec

from agnes.control import access, audit, grants, users
from agnes.control import sources as sources_repo
from agnes.errors import AgnesError
from agnes.models import User
from agnes.services.instance import Instance

TARGET_RE = re.compile(r"^([a-z][a-z0-9_]{0,62})\.(\*|[a-z_][a-z0-9_]{0,127})$")


class Grant(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    user_id: int
    user_email: str
    target: str  # '<source>.<table>' or '<source>.*'
    source: str
    created_at: str
    created_by: int | None = None


class GrantResult(Grant, frozen=True, kw_only=True):
    created: bool  # false: the grant existed already (nothing changed)


def parse_target(target: str) -> tuple[str, str]:
    match = TARGET_RE.match(target)
    if not match:
        raise AgnesError("invalid_grant_target", f"{target!r} is not '<source>.<table>' or '<source>.*'.")
    return match[1], match[2]


async def list_grants(instance: Instance, *, user_id: int | None = None, source: str | None = None,
                      target: str | None = None) -> list[Grant]:
    async with instance.control.read() as conn:
        rows = await grants.list_all(conn, user_id=user_id, source=source, target=target)
    return [msgspec.convert(r, Grant) for r in rows]


async def _check_target(instance: Instance, conn: aiosqlite.Connection, source: str, table: str) -> None:
    if await sources_repo.get(conn, source) is None:
        raise AgnesError("invalid_grant_target", f"No source is called {source!r}.",
                         hint="List sources with GET /api/admin/sources; targets are '<source>.<table>' or "
                              "'<source>.*'.")
    if table == "*":
        return
    table_id = f"{source}.{table}"
    served = instance.serving is not None and any(t.id == table_id for t in instance.serving.catalog.tables())
    if not served and table_id not in await access.registered_ids(conn, source):
        raise AgnesError("invalid_grant_target", f"Source {source!r} has no table {table!r}.",
                         hint=f"List its tables with GET /api/admin/tables?source={source}, or grant the whole "
                              f"source with target \"{source}.*\".")


async def grant(instance: Instance, actor: User, *, user_id: int, target: str,
                ip: str | None = None) -> GrantResult:
    source, table = parse_target(target)
    async with instance.control.transaction() as conn:
        if await users.get(conn, user_id) is None:
            raise AgnesError("user_not_found", f"No user has id {user_id}.")
        await _check_target(instance, conn, source, table)
        row = await grants.get(conn, user_id, target)
        created = row is None
        if created:
            await grants.create(conn, user_id=user_id, target=target, source=source, created_by=actor.id)
            await audit.record(conn, action="grant_created", actor=actor.email, actor_user_id=actor.id,
                               target=f"user:{user_id}", detail={"target": target}, ip=ip)
            row = await grants.get(conn, user_id, target)
    assert row is not None
    return GrantResult(**row, created=created)


async def revoke(instance: Instance, actor: User, *, user_id: int, target: str, ip: str | None = None) -> None:
    parse_target(target)
    async with instance.control.transaction() as conn:
        if not await grants.delete(conn, user_id, target):
            raise AgnesError("grant_not_found", f"User {user_id} has no grant on {target!r}.")
        await audit.record(conn, action="grant_revoked", actor=actor.email, actor_user_id=actor.id,
                           target=f"user:{user_id}", detail={"target": target}, ip=ip)
