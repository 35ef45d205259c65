"""Domain records shared by the control plane, services and the API.

They are msgspec structs so controllers can return them as response bodies
unchanged; secrets (password hashes, token hashes) never live on them.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Role = Literal["admin", "analyst", "viewer"]
ROLES: tuple[str, ...] = ("admin", "analyst", "viewer")
ROLE_RANK: dict[str, int] = {"viewer": 0, "analyst": 1, "admin": 2}


class User(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    email: str
    role: Role
    active: bool
    created_at: str
    updated_at: str
    last_login_at: str | None = None

    def has_role(self, minimum: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[minimum]


class ApiToken(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    name: str
    prefix: str
    created_at: str
    expires_at: str | None = None
    last_used_at: str | None = None
    revoked_at: str | None = None


class HealthError(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    at: str
    code: str
    source: str | None = None
    message: str | None = None
