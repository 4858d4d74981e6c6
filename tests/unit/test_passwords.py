"""Password hashing: argon2id, salted, never the clear text."""

from __future__ import annotations

import pytest

from pyfi.errors import InvalidValue
from pyfi.passwords import MIN_LENGTH, hash_password, verify_password


def test_hash_password_is_argon2id_not_clear_text() -> None:
    # Given a password
    # When it is hashed
    hashed = hash_password("correct horse")
    # Then the hash is argon2id and does not contain the password
    assert hashed.startswith("$argon2id$")
    assert "correct horse" not in hashed


def test_verify_password_accepts_right_and_refuses_wrong() -> None:
    # Given a stored hash
    hashed = hash_password("correct horse")
    # When passwords are checked against it
    # Then only the original one matches
    assert verify_password(hashed, "correct horse") is True
    assert verify_password(hashed, "correct horsE") is False
    assert verify_password(hashed, "") is False


def test_verify_password_refuses_a_hash_that_is_not_argon2() -> None:
    # Given a stored value that is not a hash at all (e.g. a clear-text leftover)
    # When / Then verifying returns False instead of raising
    assert verify_password("correct horse", "correct horse") is False


def test_hash_password_salts_each_hash() -> None:
    # Given the same password hashed twice
    first, second = hash_password("correct horse"), hash_password("correct horse")
    # Then the hashes differ, and both verify
    assert first != second
    assert verify_password(first, "correct horse")
    assert verify_password(second, "correct horse")


def test_hash_password_refuses_short_passwords() -> None:
    # Given a password one character shorter than the minimum
    # When / Then hashing it fails with a message giving the minimum
    with pytest.raises(InvalidValue, match=f"at least {MIN_LENGTH}"):
        hash_password("x" * (MIN_LENGTH - 1))
    # And a password of exactly the minimum length is accepted
    assert verify_password(hash_password("x" * MIN_LENGTH), "x" * MIN_LENGTH)
