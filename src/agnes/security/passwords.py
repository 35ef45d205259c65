"""Password hashing (argon2id), the password policy and email validation.

Every function takes an optional `hasher` so tests can pass a cheap
`PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)`; production
always uses argon2-cffi's defaults.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import Argon2Error

from agnes.errors import AgnesError

DEFAULT_HASHER = PasswordHasher()
MAX_PASSWORD_LENGTH = 256
SINGLE_CLASS_MIN_LENGTH = 20  # one character class is fine only when this long
MAX_EMAIL_LENGTH = 254

# The most common passwords that would otherwise pass the length and class rules.
COMMON_PASSWORDS = frozenset(
    p.lower()
    for p in (
        "password1", "password12", "password123", "password1234", "password12345", "password!234",
        "p@ssw0rd1234", "passw0rd1234", "passwordpassword", "qwerty123", "qwerty123456",
        "qwertyuiop12", "qwertyuiop123", "1q2w3e4r5t6y", "1qaz2wsx3edc", "123456789012",
        "123456789abc", "abc123456789", "abcd12345678", "iloveyou1234", "changeme1234",
        "changeme123", "letmein12345", "welcome12345", "welcome123!", "admin1234567",
        "admin123456789", "administrator1", "trustno11234", "football1234", "baseball1234",
        "sunshine1234", "superman1234", "monkey123456", "dragon123456", "agnes1234567",
    )
)  # fmt: skip


def _hasher(hasher: PasswordHasher | None) -> PasswordHasher:
    return hasher or DEFAULT_HASHER


def hash_password(password: str, *, hasher: PasswordHasher | None = None) -> str:
    return _hasher(hasher).hash(password)


def verify_password(password_hash: str, password: str, *, hasher: PasswordHasher | None = None) -> bool:
    """True only for the right password; a wrong one or a broken hash is False, never an exception."""
    try:
        return _hasher(hasher).verify(password_hash, password)
    except (Argon2Error, ValueError, TypeError):
        return False


def needs_rehash(password_hash: str, *, hasher: PasswordHasher | None = None) -> bool:
    """True if the hash uses weaker parameters than today's (rehash after a successful login)."""
    try:
        return _hasher(hasher).check_needs_rehash(password_hash)
    except (Argon2Error, ValueError, TypeError):
        return True


def _character_class(ch: str) -> str:
    if ch.islower():
        return "lowercase letters"
    if ch.isupper():
        return "uppercase letters"
    if ch.isdigit():
        return "digits"
    return "symbols"


def _weak(message: str) -> AgnesError:
    return AgnesError("weak_password", message)


def check_password_policy(password: str, *, min_length: int = 12, email: str | None = None) -> None:
    """Raise weak_password saying exactly what is wrong; return None for an acceptable password."""
    length = len(password)
    if length < min_length:
        raise _weak(f"the password is {length} characters long; at least {min_length} are required")
    if length > MAX_PASSWORD_LENGTH:
        raise _weak(f"the password is {length} characters long; at most {MAX_PASSWORD_LENGTH} are allowed")
    lowered = password.lower()
    if lowered in COMMON_PASSWORDS:
        raise _weak("the password is one of the most common passwords; choose one that is harder to guess")
    if email:
        local = email.strip().lower().partition("@")[0]
        if lowered in (local, email.strip().lower()) or (len(local) >= 3 and local in lowered):
            raise _weak(f"the password contains the email's name part {local!r}; choose one not based on it")
    classes = {_character_class(ch) for ch in password}
    if len(classes) == 1 and length < SINGLE_CLASS_MIN_LENGTH:
        (only,) = classes
        raise _weak(
            f"the password uses only {only}; mix in another kind of character (lowercase, uppercase, "
            f"digits, symbols) or make it at least {SINGLE_CLASS_MIN_LENGTH} characters long"
        )


def validate_email(email: str) -> str:
    """The address stripped and lower-cased, or invalid_email naming the bad value and the reason."""
    if not isinstance(email, str):
        raise AgnesError("invalid_email", f"{email!r} is not a valid email address: it is not a string")
    value = email.strip().lower()
    shown = value if len(value) <= 80 else value[:77] + "..."
    local, _, domain = value.partition("@")
    reason = None
    if len(value) > MAX_EMAIL_LENGTH:
        reason = f"it is {len(value)} characters long; at most {MAX_EMAIL_LENGTH} are allowed"
    elif any(ch.isspace() or ord(ch) < 32 for ch in value):
        reason = "it contains a space or control character"
    elif value.count("@") != 1:
        reason = "it must contain exactly one @"
    elif not local:
        reason = "the part before the @ is empty"
    elif "." not in domain or any(not label for label in domain.split(".")):
        reason = "the domain after the @ must look like example.com"
    if reason:
        raise AgnesError("invalid_email", f"{shown!r} is not a valid email address: {reason}")
    return value
