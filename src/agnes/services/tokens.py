"""Long-lived API tokens for agents and CI: shown once, stored hashed, revocable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agnes.control import audit
from agnes.control import tokens as tokens_repo
from agnes.errors import AgnesError
from agnes.models import ApiToken, User
from agnes.security.tokens import new_api_token
from agnes.services.instance import Instance

MAX_NAME = 100


async def create_token(
    instance: Instance, user: User, *, name: str, expires_in: int | None, ip: str | None = None
) -> tuple[ApiToken, str]:
    """Return the stored record and the plaintext, which is never available again."""
    name = name.strip()
    if not name or len(name) > MAX_NAME:
        raise AgnesError("validation_failed", f"Token name must be 1–{MAX_NAME} characters; got {len(name)}.",
                         hint="Send POST /api/tokens {\"name\": \"my-agent\"} (and optionally expires_in seconds).")
    expires_at = None
    if expires_in is not None:
        expires_at = (datetime.now(UTC) + timedelta(seconds=expires_in)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    fresh = new_api_token()
    async with instance.control.transaction() as conn:
        record = await tokens_repo.create(conn, user_id=user.id, name=name, prefix=fresh.prefix,
                                          token_hash=fresh.token_hash, expires_at=expires_at)
        await audit.record(conn, action="token_created", actor=user.email, actor_user_id=user.id,
                           target=f"token:{record.id}", detail={"name": name, "expires_at": expires_at}, ip=ip)
    return record, fresh.plaintext


async def list_tokens(instance: Instance, user: User) -> list[ApiToken]:
    async with instance.control.read() as conn:
        return await tokens_repo.list_for_user(conn, user.id)


async def revoke_token(instance: Instance, user: User, token_id: int, *, ip: str | None = None) -> ApiToken:
    async with instance.control.transaction() as conn:
        record = await tokens_repo.revoke(conn, token_id, user.id)
        if record is None:
            raise AgnesError("token_not_found", f"You have no active API token with id {token_id}.")
        await audit.record(conn, action="token_revoked", actor=user.email, actor_user_id=user.id,
                           target=f"token:{token_id}", ip=ip)
    return record
