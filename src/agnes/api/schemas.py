"""Request and response bodies of the API (msgspec structs → OpenAPI)."""

from __future__ import annotations

from typing import Annotated, Generic, Literal, TypeVar

import msgspec
from litestar.params import PathParameter
from msgspec import Meta

from agnes.models import ApiToken, Role, User

T = TypeVar("T")

Email = Annotated[str, Meta(min_length=1, max_length=254,
                             description="Email address (name@example.com), case-insensitive.")]
Password = Annotated[str, Meta(min_length=1, max_length=256,
                                description="At least the instance minimum (12 by default); see the policy.")]
STRICT = {"additionalProperties": False}
TableId = Annotated[str, PathParameter(description="`<source>.<table>`, e.g. `sample.orders`.", max_length=200)]
# Row ids in paths: SQLite integers are signed 64-bit; anything else is a 400, never a 500.
RowId = Annotated[int, PathParameter(ge=1, le=2**63 - 1)]


class ItemList(msgspec.Struct, Generic[T], frozen=True):
    items: list[T]
    count: int


class BootstrapRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    email: Email
    password: Password
    setup_token: Annotated[str, Meta(max_length=512)] | None = None


class LoginRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    email: Email
    password: Password


class AccessTokenResponse(msgspec.Struct, frozen=True):
    access_token: str
    expires_in: int
    token_type: Literal["bearer"]  # the OAuth token type, not a secret; always sent


class BootstrapResponse(msgspec.Struct, frozen=True):
    access_token: str
    expires_in: int
    user: User
    token_type: Literal["bearer"]  # the OAuth token type, not a secret; always sent


class CreateUserRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    email: Email
    password: Password
    role: Role = "viewer"


class UpdateUserRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    role: Role | None = None
    active: bool | None = None
    password: Password | None = None


class CreateTokenRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: Annotated[str, Meta(min_length=1, max_length=100)]
    expires_in: Annotated[int, Meta(ge=60, le=5 * 366 * 86400, description="Lifetime in seconds.")] | None = None


class CreatedToken(msgspec.Struct, frozen=True):
    """The plaintext `token` is shown only in this response."""

    token: str
    id: int
    name: str
    prefix: str
    created_at: str
    expires_at: str | None = None


def created_token(record: ApiToken, plaintext: str) -> CreatedToken:
    return CreatedToken(token=plaintext, id=record.id, name=record.name, prefix=record.prefix,
                        created_at=record.created_at, expires_at=record.expires_at)
