"""Password hashing, the password policy and email validation."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from agnes.errors import AgnesError
from agnes.security.passwords import (
    COMMON_PASSWORDS,
    DEFAULT_HASHER,
    check_password_policy,
    hash_password,
    needs_rehash,
    validate_email,
    verify_password,
)

CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def test_hash_and_verify() -> None:
    hashed = hash_password("correct horse battery", hasher=CHEAP)
    assert hashed.startswith("$argon2id$")
    assert "correct horse" not in hashed
    assert verify_password(hashed, "correct horse battery", hasher=CHEAP)
    assert not verify_password(hashed, "wrong horse battery", hasher=CHEAP)


def test_hashes_are_salted() -> None:
    assert hash_password("same password!", hasher=CHEAP) != hash_password("same password!", hasher=CHEAP)


@pytest.mark.parametrize(
    "bad_hash", ["", "not-a-hash", "$argon2id$v=19$m=8,t=1,p=1$garbage", "$2b$12$bcrypt"]
)
def test_verify_never_raises_on_a_broken_hash(bad_hash: str) -> None:
    assert verify_password(bad_hash, "whatever", hasher=CHEAP) is False


def test_production_defaults_are_argon2id_with_library_parameters() -> None:
    assert DEFAULT_HASHER.type.name == "ID"
    assert DEFAULT_HASHER.memory_cost == PasswordHasher().memory_cost
    assert DEFAULT_HASHER.time_cost == PasswordHasher().time_cost


def test_needs_rehash() -> None:
    cheap_hash = hash_password("some password", hasher=CHEAP)
    assert needs_rehash(cheap_hash) is True  # weaker than production parameters
    assert needs_rehash(cheap_hash, hasher=CHEAP) is False
    assert needs_rehash("not-a-hash") is True


def test_a_good_password_passes() -> None:
    assert check_password_policy("Tr0ub4dor&3-horse") is None
    assert check_password_policy("correct horse battery staple") is None  # long passphrases are fine
    assert check_password_policy("abcdefghijklmnopqrstu") is None  # single class but >= 20 characters


@pytest.mark.parametrize(
    ("password", "kwargs", "message"),
    [
        ("Short1!", {}, "the password is 7 characters long; at least 12 are required"),
        ("Short1!abc", {"min_length": 14}, "the password is 10 characters long; at least 14 are required"),
        ("Aa1!" * 65, {}, "the password is 260 characters long; at most 256 are allowed"),
        ("onlylowercaseab", {}, "the password uses only lowercase letters;"),
        ("ONLYUPPERCASEAB", {}, "the password uses only uppercase letters;"),
        ("123456789012345", {}, "the password uses only digits;"),
        ("!@#$%^&*()_+-=[", {}, "the password uses only symbols;"),
        (
            "xxJane.Doe2024!",
            {"email": "Jane.Doe@example.com"},
            "the password contains the email's name part 'jane.doe'",
        ),
        (
            "bob@example.com",
            {"email": "bob@example.com"},
            "the password contains the email's name part 'bob'",
        ),
        ("qwertyuiop12", {}, "the password is one of the most common passwords"),
        ("ChangeMe1234", {}, "the password is one of the most common passwords"),
        ("Password123", {"min_length": 8}, "the password is one of the most common passwords"),
    ],
)
def test_policy_says_what_is_wrong(password: str, kwargs: dict, message: str) -> None:
    with pytest.raises(AgnesError) as info:
        check_password_policy(password, **kwargs)
    assert info.value.code == "weak_password"
    assert info.value.message.startswith(message)
    assert password not in info.value.message or "email" in message


def test_single_class_message_suggests_the_fix() -> None:
    with pytest.raises(AgnesError) as info:
        check_password_policy("onlylowercaseab")
    assert "at least 20 characters" in info.value.message


def test_common_list_is_small_and_lowercase() -> None:
    assert 25 <= len(COMMON_PASSWORDS) <= 60
    assert all(p == p.lower() for p in COMMON_PASSWORDS)


def test_short_email_local_part_does_not_block_everything() -> None:
    assert check_password_policy("a-sound Passw0rd", email="a@example.com") is None


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("Jane.Doe@Example.COM", "jane.doe@example.com"),
        ("  admin@corp.example.org \n", "admin@corp.example.org"),
        ("a+tag@x.io", "a+tag@x.io"),
    ],
)
def test_validate_email_normalises(raw: str, normalised: str) -> None:
    assert validate_email(raw) == normalised


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("janeexample.com", "exactly one @"),
        ("a@b@example.com", "exactly one @"),
        ("@example.com", "the part before the @ is empty"),
        ("jane@localhost", "the domain after the @"),
        ("jane@example.", "the domain after the @"),
        ("jane@.example.com", "the domain after the @"),
        ("jane doe@example.com", "space"),
        ("", "exactly one @"),
        ("a" * 250 + "@example.com", "at most 254"),
    ],
)
def test_validate_email_rejects(raw: str, reason: str) -> None:
    with pytest.raises(AgnesError) as info:
        validate_email(raw)
    assert info.value.code == "invalid_email"
    assert reason in info.value.message
    assert raw.strip().lower()[:20] in info.value.message
