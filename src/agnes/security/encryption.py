"""Encryption of stored source credentials (tokens, passwords) at rest.

Fernet (AES-128-CBC + HMAC-SHA256) with a key derived from the instance's
encryption key by HKDF, so the raw instance key is never used directly and
other purposes can derive their own keys from it later.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from agnes.errors import AgnesError
from agnes.security.secrets import key_fingerprint

_HKDF_INFO = b"agnes-secrets-v1"
MASK = "••••"
MASK_SHOW_LAST_FROM = 16  # shorter values are fully hidden: 4 of 12 characters is too much


def _derive_fernet_key(key: bytes) -> bytes:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(key)
    return base64.urlsafe_b64encode(derived)


class Encryptor:
    """Encrypts and decrypts short secrets with the instance encryption key."""

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("the encryption key is empty")
        self._fernet = Fernet(_derive_fernet_key(key))
        self.fingerprint = key_fingerprint(key)

    def __repr__(self) -> str:
        return f"Encryptor(fingerprint={self.fingerprint})"

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def decrypt(self, token: str) -> str:
        """The plaintext; a value from another key (or a damaged one) is an encryption_key_mismatch."""
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except (InvalidToken, UnicodeError) as exc:
            raise AgnesError(
                "encryption_key_mismatch",
                "a stored secret cannot be decrypted with the current encryption key "
                f"(fingerprint {self.fingerprint}); AGNES_ENCRYPTION_KEY or state/.encryption_key "
                "changed since it was stored, or the stored value is damaged",
            ) from exc


def mask(value: str) -> str:
    """How a secret is shown back: never in full, at most its last 4 characters."""
    if len(value) >= MASK_SHOW_LAST_FROM:
        return MASK + value[-4:]
    return MASK
