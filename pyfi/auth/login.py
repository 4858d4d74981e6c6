"""Checking a name and a password, and opening a login when they match.

Every refusal looks the same from outside: one message for an unknown name
and for a wrong password, and about the same time spent on both (an unknown
name's password is checked against a stand-in hash of the same cost), so
neither the answer nor its delay tells which names exist. Failures are
counted and throttled by :mod:`pyfi.auth.throttle`.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from pyfi.auth import throttle, tokens
from pyfi.db import models
from pyfi.db.types import utcnow
from pyfi.errors import LoginFailed
from pyfi.objects.validate import NAME_PATTERN
from pyfi.passwords import hash_password, is_usable, verify_password

if TYPE_CHECKING:
    from pyfi.db.session import Database

# One answer for an unknown name and for a wrong password.
WRONG_NAME_OR_PASSWORD = "wrong name or password; check both and run `flow login` again"
# Checked when no user has the name (or the user has no password), so that
# the check costs what a real one does. Made at import: made on first use, it
# would make the first unknown name of a process slower than a known one.
_STAND_IN_HASH = hash_password(secrets.token_urlsafe(24))


class UserDisabled(LoginFailed):
    """The user is disabled; ask an administrator to enable it."""


def authenticate(
    session: Session, name: str, password: str, now: datetime | None = None
) -> models.User | None:
    """The user ``name`` if ``password`` is theirs, else ``None`` with the failure counted.

    Raises
    ------
    LoginFailed
        ``name`` is locked out after repeated failures (nothing is counted then).
    UserDisabled
        The password is right but the user is disabled.
    """
    now = now or utcnow()
    if not NAME_PATTERN.fullmatch(name):
        return None  # no user can have it: nothing to guess, nothing to count
    throttle.check_not_locked(session, name, now)
    user = session.scalars(select(models.User).where(models.User.name == name)).one_or_none()
    stored = user.password_hash if user is not None else ""
    if not is_usable(stored):  # no such user, or one without a password (the embedded OS user)
        verify_password(_STAND_IN_HASH, password)
        user = None
    elif not verify_password(stored, password):
        user = None
    if user is None:
        throttle.record_failure(session, name, now)
        return None
    if not user.enabled:
        raise UserDisabled(f"the user {name!r} is disabled; ask an administrator to enable it")
    throttle.clear(session, name)
    return user


def log_in(
    database: Database, name: str, password: str, hours: float, *, replacing: str | None = None
) -> tokens.IssuedLogin:
    """Check ``name`` and ``password`` and open a login lasting ``hours``.

    The failure is committed before the refusal is raised, so the throttle
    counts it. ``replacing`` is the token of an earlier login on this
    database, ended in the same transaction as the new one opens.

    Raises
    ------
    LoginFailed
        Wrong name or password (one message for both), a locked-out name, a disabled user.
    """
    with database.transaction() as session:
        user = authenticate(session, name, password)
        if user is not None:
            if replacing:
                tokens.revoke(session, replacing)
            issued = tokens.issue(session, user, hours)
    if user is None:
        raise LoginFailed(WRONG_NAME_OR_PASSWORD)
    return issued
