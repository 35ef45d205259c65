"""Logins, bearer authentication and the failed-login back-off.

Back-off is keyed by (account, client address): a stranger hammering the
admin's email from their own address slows only themselves, so nobody can
lock the admin out.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time

import aiosqlite

from agnes.control import audit, login_failures
from agnes.control import tokens as tokens_repo
from agnes.control import users as users_repo
from agnes.control.db import utcnow_iso
from agnes.errors import AgnesError
from agnes.models import User
from agnes.security.passwords import hash_password, verify_password
from agnes.security.tokens import (
    AccessToken,
    decode_access_token,
    hash_api_token,
    is_api_token,
    issue_access_token,
)
from agnes.services.instance import Instance

_DUMMY_HASH: str | None = None


def _dummy_hash() -> str:
    """A real argon2 hash to verify against when the email is unknown (equal timing)."""
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = hash_password("agnes-timing-equaliser-not-a-password")
    return _DUMMY_HASH


def _throttle_key(email: str, ip: str | None) -> str:
    return hashlib.sha256(f"{email.strip().lower()}|{ip or '-'}".encode()).hexdigest()


def backoff_seconds(failures: int, free: int, cap: float) -> float:
    """How long (account, address) is refused after `failures` counted attempts: 2, 4, 8 … up to `cap`."""
    if failures <= free:
        return 0.0
    return min(2.0 ** min(failures - free, 60), cap)


def forget_after_seconds(free: int, cap: float) -> float:
    """How long a quiet counter is kept (at least a day).

    Long enough that waiting for a counter to be forgotten never beats waiting out
    the capped back-off: a fresh counter grants at most free + 2 + log2(cap) tries
    before it reaches the cap, and the cap grants as many in this time.
    """
    cap = max(float(cap), 1.0)
    return max(86400.0, cap * (free + 2 + math.ceil(math.log2(cap))))


_SWEEP_EVERY = 60.0  # seconds; the sweep scans the table, so not on every attempt
_LAST_SWEEP: dict[str, float] = {}


async def _sweep_stale(instance: Instance, conn: aiosqlite.Connection, now: float) -> None:
    """Forget counters of attempts long past (random emails would otherwise pile up forever)."""
    where, tick = str(instance.control.path), time.monotonic()
    if tick - _LAST_SWEEP.get(where, -1e18) < _SWEEP_EVERY:
        return
    _LAST_SWEEP[where] = tick
    cfg = instance.settings.auth
    keep = forget_after_seconds(cfg.login_free_failures, cfg.login_max_backoff_seconds)
    await login_failures.forget_stale(conn, last_failed_before=now - keep, now=now)


async def login(instance: Instance, *, email: str, password: str, ip: str | None) -> tuple[User, AccessToken]:
    """Check the password; refused with 429 while (account, address) is backed off.

    The block check and the attempt count happen in one write transaction
    *before* the (slow) password check, so parallel guesses cannot slip past the
    counter; a right password then clears the counter again.
    """
    cfg = instance.settings.auth
    key = _throttle_key(email, ip)
    now = time.time()
    async with instance.control.transaction() as conn:
        state = await login_failures.get(conn, key)
        if state and state[1] > now:
            retry_after = max(1, math.ceil(state[1] - now))
            raise AgnesError(
                "too_many_attempts",
                f"Too many failed logins for {email} from this address; try again in {retry_after} s.",
                headers={"Retry-After": str(retry_after)},
            )
        await _sweep_stale(instance, conn, now)
        failures = await login_failures.count_attempt(conn, key, now)
        delay = backoff_seconds(failures, cfg.login_free_failures, cfg.login_max_backoff_seconds)
        if delay > 0:
            await login_failures.block_until(conn, key, now + delay)
    async with instance.control.read() as conn:
        found = await users_repo.get_with_hash(conn, email.strip())
    stored_hash = found[1] if found else await asyncio.to_thread(_dummy_hash)
    ok = await asyncio.to_thread(verify_password, stored_hash, password)
    user = found[0] if found else None
    if not ok or user is None or not user.active:
        async with instance.control.transaction() as conn:
            await audit.record(
                conn, action="login_failed", actor=email[:254], detail={"failures": failures}, ip=ip
            )
        raise AgnesError("invalid_credentials")
    async with instance.control.transaction() as conn:
        await login_failures.clear(conn, key)
        await users_repo.touch_login(conn, user.id)
        await audit.record(conn, action="login", actor=user.email, actor_user_id=user.id, ip=ip)
    token = issue_access_token(instance.secrets.jwt_key, user.id, cfg.access_token_ttl_seconds)
    return user, token


async def authenticate(instance: Instance, bearer: str) -> User:
    """Resolve a bearer credential to an active user; role comes fresh from the database."""
    if is_api_token(bearer):
        async with instance.control.read() as conn:
            found = await tokens_repo.find_active_by_hash(conn, hash_api_token(bearer), utcnow_iso())
            user = await users_repo.get(conn, found[1]) if found else None
        if found is None:
            raise AgnesError("invalid_token", "The API token is unknown, revoked or expired.")
        await _touch_token(instance, found[0])
    else:
        claims = decode_access_token(instance.secrets.jwt_key, bearer)
        async with instance.control.read() as conn:
            user = await users_repo.get(conn, claims.user_id)
    if user is None or not user.active:
        raise AgnesError("invalid_token", "The token's user no longer exists or is deactivated.")
    return user


_LAST_TOUCH: dict[int, float] = {}


async def _touch_token(instance: Instance, token_id: int) -> None:
    """Record last use at most once a minute per token: no write on every request."""
    now = time.monotonic()
    if now - _LAST_TOUCH.get(token_id, -1e9) < 60:
        return
    _LAST_TOUCH[token_id] = now
    async with instance.control.transaction() as conn:
        await tokens_repo.touch(conn, token_id)
