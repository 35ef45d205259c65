"""Bearer tokens: short-lived JWT access tokens and long-lived API tokens.

Access tokens are HS256 JWTs signed with the instance JWT key; decoding pins
the algorithm, issuer and type so 'none', RS256 or other-purpose tokens are
refused. API tokens are random strings stored only as SHA-256 hashes; their
`agnes_` prefix tells them apart from JWTs (which start with `eyJ`).
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from datetime import UTC, datetime

import jwt
import msgspec

from agnes.errors import AgnesError

ALGORITHM = "HS256"
ISSUER = "agnes"
ACCESS_TYPE = "access"
NBF_LEEWAY_SECONDS = 5  # tolerate small clock differences between processes
API_TOKEN_PREFIX = "agnes_"  # noqa: S105 - a marker, not a secret
API_TOKEN_PREFIX_LENGTH = 12  # shown in token lists so users can tell tokens apart
_REQUIRED = ["sub", "iat", "nbf", "exp", "jti", "typ", "iss"]


class AccessToken(msgspec.Struct, frozen=True):
    token: str
    expires_in: int  # seconds
    jti: str
    expires_at: int  # unix seconds


class AccessClaims(msgspec.Struct, frozen=True):
    user_id: int
    jti: str
    exp: int


class NewApiToken(msgspec.Struct, frozen=True):
    plaintext: str  # shown to the user once, never stored
    prefix: str
    token_hash: str


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _invalid(message: str) -> AgnesError:
    return AgnesError("invalid_token", message)


def issue_access_token(
    key: bytes, user_id: int, ttl_seconds: int, *, now: float | None = None
) -> AccessToken:
    if ttl_seconds <= 0:
        raise ValueError("ttl_seconds must be positive")
    iat = int(time.time() if now is None else now)
    exp = iat + int(ttl_seconds)
    jti = uuid.uuid4().hex
    claims = {
        "sub": str(user_id),
        "iat": iat,
        "nbf": iat,
        "exp": exp,
        "jti": jti,
        "typ": ACCESS_TYPE,
        "iss": ISSUER,
    }
    token = jwt.encode(claims, key, algorithm=ALGORITHM)
    return AccessToken(token=token, expires_in=int(ttl_seconds), jti=jti, expires_at=exp)


def _verified_claims(key: bytes, token: str) -> dict:
    try:
        alg = jwt.get_unverified_header(token).get("alg")
    except jwt.PyJWTError as exc:
        raise _invalid(f"the token is not a well-formed JWT ({exc})") from exc
    if alg != ALGORITHM:
        raise _invalid(f"the token uses algorithm {alg!r}; only {ALGORITHM} tokens from Agnes are accepted")
    options = {"require": _REQUIRED, "verify_exp": False, "verify_nbf": False, "verify_iat": False}
    try:
        return jwt.decode(token, key, algorithms=[ALGORITHM], issuer=ISSUER, options=options)
    except jwt.InvalidSignatureError as exc:
        raise _invalid("the token signature is wrong: it was altered or signed with another key") from exc
    except jwt.InvalidIssuerError as exc:
        raise _invalid(f"the token was not issued by {ISSUER!r}") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise _invalid(f"the token lacks the {exc.claim!r} claim") from exc
    except jwt.PyJWTError as exc:
        raise _invalid(f"the token is invalid ({exc})") from exc


def decode_access_token(key: bytes, token: str, *, now: float | None = None) -> AccessClaims:
    """The verified claims; any problem is invalid_token with a message that says which."""
    if not isinstance(token, str) or not token:
        raise _invalid("the token is empty")
    claims = _verified_claims(key, token)
    now = time.time() if now is None else now
    if claims["typ"] != ACCESS_TYPE:
        raise _invalid(f"the token is a {claims['typ']!r} token, not an access token")
    exp, nbf = claims["exp"], claims["nbf"]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (exp, nbf, claims["iat"])):
        raise _invalid("the token's exp, nbf and iat claims must be numbers")
    if now >= exp:
        raise _invalid(f"the token expired at {_iso(exp)}")
    if now + NBF_LEEWAY_SECONDS < nbf:
        raise _invalid(f"the token is not valid before {_iso(nbf)}")
    sub, jti = claims["sub"], claims["jti"]
    if not isinstance(sub, str) or not sub.isascii() or not sub.isdigit():
        raise _invalid("the token's subject is not a user id")
    if not isinstance(jti, str) or not jti:
        raise _invalid("the token's jti claim is empty")
    return AccessClaims(user_id=int(sub), jti=jti, exp=int(exp))


def hash_api_token(plaintext: str) -> str:
    """What is stored and looked up: a plain SHA-256 suffices for 256-bit random tokens."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


def new_api_token() -> NewApiToken:
    plaintext = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
    return NewApiToken(
        plaintext=plaintext, prefix=plaintext[:API_TOKEN_PREFIX_LENGTH], token_hash=hash_api_token(plaintext)
    )


def is_api_token(value: str) -> bool:
    return isinstance(value, str) and value.startswith(API_TOKEN_PREFIX)
