"""JWT access tokens and long-lived API tokens."""

from __future__ import annotations

import base64
import hashlib
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from agnes.errors import AgnesError
from agnes.security.tokens import (
    AccessClaims,
    decode_access_token,
    hash_api_token,
    is_api_token,
    issue_access_token,
    new_api_token,
)

KEY = b"k" * 48
NOW = 1_700_000_000.0


def claims(**overrides) -> dict:
    base = {"sub": "7", "iat": int(NOW), "nbf": int(NOW), "exp": int(NOW) + 60, "jti": "abc"}
    base |= {"typ": "access", "iss": "agnes"}
    return {k: v for k, v in (base | overrides).items() if v is not None}


def rejected(token: str, key: bytes = KEY, now: float = NOW) -> str:
    with pytest.raises(AgnesError) as info:
        decode_access_token(key, token, now=now)
    assert info.value.code == "invalid_token"
    return info.value.message


def test_issue_and_decode_round_trip() -> None:
    issued = issue_access_token(KEY, 42, 900, now=NOW)
    assert issued.expires_in == 900
    assert issued.expires_at == int(NOW) + 900
    assert len(issued.jti) == 32
    decoded = decode_access_token(KEY, issued.token, now=NOW + 10)
    assert decoded == AccessClaims(user_id=42, jti=issued.jti, exp=issued.expires_at)


def test_claims_are_complete() -> None:
    issued = issue_access_token(KEY, 3, 60, now=NOW)
    raw = jwt.decode(issued.token, options={"verify_signature": False})
    assert raw == {
        "sub": "3",
        "iat": int(NOW),
        "nbf": int(NOW),
        "exp": int(NOW) + 60,
        "jti": issued.jti,
        "typ": "access",
        "iss": "agnes",
    }
    assert jwt.get_unverified_header(issued.token)["alg"] == "HS256"


def test_each_token_has_its_own_jti() -> None:
    assert issue_access_token(KEY, 1, 60).jti != issue_access_token(KEY, 1, 60).jti


def test_default_now_is_the_clock() -> None:
    issued = issue_access_token(KEY, 1, 60)
    assert abs(issued.expires_at - (time.time() + 60)) < 5
    assert decode_access_token(KEY, issued.token).user_id == 1


def test_ttl_must_be_positive() -> None:
    with pytest.raises(ValueError):
        issue_access_token(KEY, 1, 0)


def test_expired() -> None:
    issued = issue_access_token(KEY, 1, 60, now=NOW)
    message = rejected(issued.token, now=NOW + 60)
    assert message == "the token expired at 2023-11-14T22:14:20Z"
    assert "expired" in rejected(issued.token, now=NOW + 3600)


def test_not_yet_valid() -> None:
    issued = issue_access_token(KEY, 1, 60, now=NOW + 600)
    assert "not valid before" in rejected(issued.token, now=NOW)


def test_small_clock_skew_is_tolerated() -> None:
    issued = issue_access_token(KEY, 1, 60, now=NOW + 2)
    assert decode_access_token(KEY, issued.token, now=NOW).user_id == 1


def test_tampered_payload() -> None:
    header, payload, signature = issue_access_token(KEY, 1, 60, now=NOW).token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=="))
    data["sub"] = "1000"
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    assert "signature" in rejected(f"{header}.{forged}.{signature}")


def test_wrong_key() -> None:
    token = issue_access_token(b"o" * 48, 1, 60, now=NOW).token
    assert "signature" in rejected(token)


def test_alg_none() -> None:
    token = jwt.encode(claims(), None, algorithm="none")
    assert rejected(token) == "the token uses algorithm 'none'; only HS256 tokens from Agnes are accepted"


def test_rs256() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(claims(), private, algorithm="RS256")
    assert "'RS256'" in rejected(token)


def test_hs512_with_the_right_key_is_still_refused() -> None:
    assert "'HS512'" in rejected(jwt.encode(claims(), KEY + KEY, algorithm="HS512"), key=KEY + KEY)


def test_wrong_type() -> None:
    token = jwt.encode(claims(typ="refresh"), KEY, algorithm="HS256")
    assert rejected(token) == "the token is a 'refresh' token, not an access token"


def test_wrong_issuer() -> None:
    token = jwt.encode(claims(iss="someone-else"), KEY, algorithm="HS256")
    assert "issued by 'agnes'" in rejected(token)


@pytest.mark.parametrize("claim", ["sub", "exp", "jti", "typ", "iss", "nbf", "iat"])
def test_missing_claim(claim: str) -> None:
    token = jwt.encode(claims(**{claim: None}), KEY, algorithm="HS256")
    assert f"'{claim}'" in rejected(token)


@pytest.mark.parametrize("sub", ["admin", "-1", "1.5"])
def test_subject_must_be_a_user_id(sub: str) -> None:
    token = jwt.encode(claims(sub=sub), KEY, algorithm="HS256")
    assert "subject" in rejected(token)


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.bm9wZQ.xx"])
def test_garbage(garbage: str) -> None:
    rejected(garbage)


def test_new_api_token() -> None:
    token = new_api_token()
    assert token.plaintext.startswith("agnes_")
    assert len(token.plaintext) >= 6 + 43
    assert token.prefix == token.plaintext[:12]
    assert token.token_hash == hashlib.sha256(token.plaintext.encode()).hexdigest()
    assert token.token_hash == hash_api_token(token.plaintext)
    assert new_api_token().plaintext != token.plaintext


def test_is_api_token() -> None:
    assert is_api_token(new_api_token().plaintext)
    assert not is_api_token(issue_access_token(KEY, 1, 60).token)
    assert not is_api_token("")
