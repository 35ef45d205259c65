"""First run: the one-time setup token and the bootstrap of the first admin."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path

import aiosqlite

from agnes.control import audit, kv
from agnes.control import users as users_repo
from agnes.control.migrate import LATEST_SCHEMA
from agnes.errors import AgnesError
from agnes.models import User
from agnes.security.passwords import check_password_policy, hash_password, validate_email
from agnes.security.setup_token import (
    ensure_setup_token,
    remove_setup_token,
    setup_token_hash,
    setup_token_matches,
)
from agnes.security.tokens import AccessToken, issue_access_token
from agnes.services.instance import Instance

log = logging.getLogger("agnes.setup")


async def prepare_setup_token(instance: Instance, *, announce: bool = True) -> str | None:
    """While no user exists: make sure a setup token exists and announce it once."""
    state_dir = instance.settings.state_dir
    if not instance.setup_required:
        remove_setup_token(state_dir)
        return None
    token = ensure_setup_token(state_dir, instance.settings.secrets.setup_token)
    async with instance.control.transaction() as conn:
        await kv.put(conn, kv.SETUP_TOKEN_HASH, setup_token_hash(token))
    if announce:
        server = instance.settings.server
        _announce(token, state_dir, f"http://{server.host}:{server.port}")
    return token


def _announce(token: str, state_dir: Path, base_url: str) -> None:
    """Straight to stderr, once: AGNES_LOG_LEVEL=error (or any logging set-up) must not hide the token
    from whoever installs. It is the same line the log would carry, in the same format."""
    message = (
        f"Agnes is in setup mode. Setup token: {token}  (also in {state_dir / 'setup-token'}; "
        f"`agnes setup-token` shows it). Finish setup at {base_url}/setup or: curl -X POST {base_url}/auth/bootstrap "
        "-H 'Content-Type: application/json' "
        "-d '{\"email\": \"admin@example.com\", \"password\": \"…\", \"setup_token\": \"…\"}'"
    )
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"{stamp} WARNING {log.name}: {message}", file=sys.stderr, flush=True)


async def _check_schema(conn: aiosqlite.Connection) -> None:
    """Bootstrap writes the first admin: only into a control plane migrated to the schema this code knows."""
    async with conn.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    version = int(row[0]) if row is not None else 0
    if version == LATEST_SCHEMA:
        return
    if version < LATEST_SCHEMA:
        raise AgnesError("not_ready", f"The control plane is at schema {version}; this Agnes needs schema "
                         f"{LATEST_SCHEMA}, and its migration has not finished.")
    raise AgnesError("not_ready", f"The control plane is at schema {version}, newer than the schema "
                     f"{LATEST_SCHEMA} this server knows: a newer Agnes migrated it while this one runs.",
                     hint="Stop this server and start the newer Agnes (`docker compose up -d` with the newer "
                     "image, or `agnes serve` from it). An older one refuses to start and names the backup to restore.")


async def bootstrap(
    instance: Instance, *, email: str, password: str, setup_token: str, ip: str | None
) -> tuple[User, AccessToken]:
    """Create the first admin. Exactly one concurrent caller can win."""
    email = validate_email(email)
    check_password_policy(password, min_length=instance.settings.auth.min_password_length, email=email)
    password_hash = await asyncio.to_thread(hash_password, password)
    async with instance.control.transaction() as conn:
        await _check_schema(conn)
        if await users_repo.count(conn) > 0:
            raise AgnesError("already_bootstrapped")
        expected = await kv.get(conn, kv.SETUP_TOKEN_HASH)
        accepted = bool(expected) and setup_token_matches(expected or "", setup_token)
        if accepted:
            user = await users_repo.create(conn, email=email, password_hash=password_hash, role="admin")
            await kv.delete(conn, kv.SETUP_TOKEN_HASH)
            await audit.record(
                conn, action="bootstrap", actor=email, actor_user_id=user.id, target=f"user:{user.id}", ip=ip
            )
    if not accepted:
        async with instance.control.transaction() as conn:
            await audit.record(conn, action="bootstrap_refused", actor=email, detail={"reason": "bad setup token"},
                               ip=ip)
        raise AgnesError("invalid_setup_token")
    # Only after COMMIT: a failed commit keeps the file (and the stored hash) for a retry. The hash, deleted
    # in the transaction, is what makes the token one-time; the file is only the way to read it.
    remove_setup_token(instance.settings.state_dir)
    instance.setup_required = False
    token = issue_access_token(
        instance.secrets.jwt_key, user.id, instance.settings.auth.access_token_ttl_seconds
    )
    return user, token
