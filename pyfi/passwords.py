"""Password hashing: argon2id through argon2-cffi; clear text is never stored."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from pyfi.errors import InvalidValue

MIN_LENGTH = 8

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    """Hash a new password, refusing ones too short to be worth hashing."""
    if len(password) < MIN_LENGTH:
        raise InvalidValue(f"the password is too short; use at least {MIN_LENGTH} characters")
    return _hasher.hash(password)


def is_usable(password_hash: str) -> bool:
    """False for a stored value no password can match (a user without a password)."""
    return password_hash.startswith("$argon2")


def verify_password(password_hash: str, password: str) -> bool:
    """True if ``password`` matches ``password_hash``."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
