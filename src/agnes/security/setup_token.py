"""The one-time setup token that guards bootstrapping the first admin.

Until the first admin exists anyone who reaches the server could claim it;
the token proves the caller can read the server's log or data directory.
It lives in state/setup-token (0600) and stays stable across restarts until
it is used; the control plane stores only its hash.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

from agnes.errors import StartupError
from agnes.security.files import read_secret_file, replace_file, write_once

SETUP_TOKEN_FILE = "setup-token"  # noqa: S105 - a file name
MIN_PRESET_LENGTH = 16


def _path(state_dir: Path) -> Path:
    return Path(state_dir) / SETUP_TOKEN_FILE


def read_setup_token(state_dir: Path) -> str | None:
    """The current token, or None if there is none (already used, or never created)."""
    raw = read_secret_file(_path(state_dir))
    token = raw.decode("utf-8", errors="replace").strip() if raw is not None else ""
    return token or None


def ensure_setup_token(state_dir: Path, preset: str | None) -> str:
    """The token to print: AGNES_SETUP_TOKEN if set, else the kept one, else a new one."""
    path = _path(state_dir)
    preset = (preset or "").strip()
    if preset:
        if len(preset) < MIN_PRESET_LENGTH:
            raise StartupError(
                "secret_too_short",
                f"AGNES_SETUP_TOKEN is {len(preset)} characters; at least {MIN_PRESET_LENGTH} are required",
            )
        if read_setup_token(state_dir) != preset:
            replace_file(path, preset.encode())
        return preset
    existing = read_setup_token(state_dir)
    if existing:
        return existing
    fresh = secrets.token_urlsafe(24).encode()
    if path.exists():  # present but empty (damaged): overwrite rather than keep an empty token
        replace_file(path, fresh)
        return fresh.decode()
    return write_once(path, fresh).decode().strip()


def remove_setup_token(state_dir: Path) -> None:
    _path(state_dir).unlink(missing_ok=True)


def setup_token_hash(token: str) -> str:
    return hashlib.sha256(token.strip().encode()).hexdigest()


def setup_token_matches(expected_hash: str, candidate: str | None) -> bool:
    """Constant-time check of a submitted token against the stored hash; empty never matches."""
    if not expected_hash or not isinstance(candidate, str) or not candidate.strip():
        return False
    return hmac.compare_digest(setup_token_hash(candidate).encode(), expected_hash.encode())
