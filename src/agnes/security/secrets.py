"""The instance secrets: JWT signing, session cookies, credential encryption.

Each comes from the environment, else from its file in state/, else it is
generated once and kept there. There is no built-in or test default: a known
key would let anyone forge tokens or read stored credentials.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from pathlib import Path

import msgspec

from agnes.errors import StartupError
from agnes.security.files import read_secret_file, write_once

MIN_SECRET_BYTES = 32

# (struct field, environment variable, file name in state/)
SECRET_SOURCES: tuple[tuple[str, str, str], ...] = (
    ("jwt_key", "JWT_SECRET_KEY", ".jwt_secret"),
    ("session_key", "SESSION_SECRET", ".session_secret"),
    ("encryption_key", "AGNES_ENCRYPTION_KEY", ".encryption_key"),
)

_FINGERPRINT_LABEL = b"agnes-encryption-key-fingerprint-v1"


class InstanceSecrets(msgspec.Struct, frozen=True):
    jwt_key: bytes
    session_key: bytes
    encryption_key: bytes

    def __repr__(self) -> str:  # never print key material by accident
        return "InstanceSecrets(<redacted>)"


def _too_short(name: str, length: int) -> StartupError:
    return StartupError(
        "secret_too_short", f"{name} is {length} bytes; at least {MIN_SECRET_BYTES} are required"
    )


def _load_one(state_dir: Path, env: Mapping[str, str], var: str, filename: str) -> bytes:
    configured = (env.get(var) or "").strip()
    if configured:
        raw = configured.encode()
        if len(raw) < MIN_SECRET_BYTES:
            raise _too_short(var, len(raw))
        return raw
    path = state_dir / filename
    try:
        raw = read_secret_file(path)
        if raw is None:
            raw = write_once(path, secrets.token_urlsafe(48).encode())
    except OSError as exc:
        raise StartupError(
            "data_dir_unusable", f"cannot read or create {path}: {exc.strerror or exc}"
        ) from exc
    raw = raw.strip()  # a hand-written file usually ends with a newline
    if len(raw) < MIN_SECRET_BYTES:
        raise _too_short(str(path), len(raw))
    return raw


def load_instance_secrets(state_dir: Path, env: Mapping[str, str]) -> InstanceSecrets:
    """Resolve all three secrets; safe when several processes start at once."""
    state_dir = Path(state_dir)
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError("data_dir_unusable", f"cannot create {state_dir}: {exc.strerror or exc}") from exc
    values = {field: _load_one(state_dir, env, var, name) for field, var, name in SECRET_SOURCES}
    return InstanceSecrets(**values)


def key_fingerprint(key: bytes) -> str:
    """A stable id of `key` that is safe to store: it tells keys apart without revealing them."""
    return hmac.new(key, _FINGERPRINT_LABEL, hashlib.sha256).hexdigest()[:32]
