"""Credential encryption at rest and masking."""

from __future__ import annotations

import os

import pytest

from agnes.errors import AgnesError
from agnes.security.encryption import Encryptor, mask
from agnes.security.secrets import key_fingerprint


def test_round_trip() -> None:
    enc = Encryptor(os.urandom(32))
    for plaintext in ["kbc-token-123", "", "pässwörd ✓ 🔑", "x" * 10_000]:
        token = enc.encrypt(plaintext)
        assert plaintext not in token or plaintext == ""
        assert enc.decrypt(token) == plaintext


def test_same_key_bytes_decrypt_across_instances() -> None:
    key = os.urandom(48)
    assert Encryptor(key).decrypt(Encryptor(key).encrypt("secret")) == "secret"


def test_ciphertext_is_randomised() -> None:
    enc = Encryptor(os.urandom(32))
    assert enc.encrypt("same") != enc.encrypt("same")


def test_other_key_is_an_encryption_key_mismatch() -> None:
    token = Encryptor(b"a" * 32).encrypt("secret")
    other = b"b" * 32
    with pytest.raises(AgnesError) as info:
        Encryptor(other).decrypt(token)
    assert info.value.code == "encryption_key_mismatch"
    assert key_fingerprint(other) in info.value.message
    assert "AGNES_ENCRYPTION_KEY" in info.value.message
    assert "secret" not in info.value.message.replace("stored secret", "")


def test_garbage_is_an_encryption_key_mismatch() -> None:
    with pytest.raises(AgnesError) as info:
        Encryptor(b"a" * 32).decrypt("not-a-fernet-token")
    assert info.value.code == "encryption_key_mismatch"


def test_empty_key_is_refused() -> None:
    with pytest.raises(ValueError):
        Encryptor(b"")


def test_repr_shows_only_the_fingerprint() -> None:
    key = b"k" * 32
    assert repr(Encryptor(key)) == f"Encryptor(fingerprint={key_fingerprint(key)})"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("", "••••"),
        ("abc", "••••"),
        ("twelve-chars", "••••"),  # short secrets are hidden completely
        ("0123456789abcdef", "••••cdef"),
        ("agnes_" + "z" * 40 + "WXYZ", "••••WXYZ"),
    ],
)
def test_mask(value: str, shown: str) -> None:
    assert mask(value) == shown
