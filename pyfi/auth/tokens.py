"""Login tokens: issued at login, checked once per process, revoked at logout.

A token is 32 random bytes from :mod:`secrets`; the database keeps only its
SHA-256 (:func:`hash_token`), so reading the table, a dump or a backup gives
nobody a login. SHA-256 rather than a slow password hash is enough here: the
token is random, not chosen by a person, so there is nothing to guess.

A token logs its user in while it is unexpired, unrevoked, and its user is
enabled: disabling a user ends every login of theirs at once, without
waiting for the tokens to expire.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from pyfi.db import models
from pyfi.db.types import utcnow

# Tokens carry a prefix so that secret scanners (and people) can tell what they are.
TOKEN_PREFIX = "pyfi_"
# last_used is written at most this often per login: most commands only read.
LAST_USED_GRANULARITY = timedelta(minutes=5)


@dataclass(frozen=True)
class IssuedLogin:
    """A new login: the token (shown to its holder once, never stored) and its row's facts."""

    token: str
    session_id: uuid.UUID
    user_name: str
    expires: datetime


@dataclass(frozen=True)
class LoggedIn:
    """Whom a valid token logs in."""

    session_id: uuid.UUID
    user_id: uuid.UUID
    user_name: str
    expires: datetime


def new_token() -> str:
    """A fresh token: 32 random bytes, URL-safe text."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The hex SHA-256 of ``token``: what the database stores and looks tokens up by."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue(
    session: Session, user: models.User, hours: float, now: datetime | None = None
) -> IssuedLogin:
    """Open a login for ``user`` lasting ``hours``; returns the token to hand over."""
    now = now or utcnow()
    token = new_token()
    row = models.LoginSession(
        user_id=user.id,
        token_hash=hash_token(token),
        created=now,
        expires=now + timedelta(hours=hours),
    )
    session.add(row)
    session.flush()
    return IssuedLogin(token, row.id, user.name, row.expires)


def logged_in(session: Session, token: str, now: datetime | None = None) -> LoggedIn | None:
    """Whom ``token`` logs in, or ``None`` if it is unknown, expired, revoked or disabled.

    One lookup by the unique index on the token's hash; ``last_used`` is
    brought up to date only when it is older than :data:`LAST_USED_GRANULARITY`.
    """
    now = now or utcnow()
    row = session.execute(
        select(
            models.LoginSession.id,
            models.LoginSession.expires,
            models.LoginSession.last_used,
            models.User.id,
            models.User.name,
        )
        .join(models.User, models.User.id == models.LoginSession.user_id)
        .where(
            models.LoginSession.token_hash == hash_token(token),
            models.LoginSession.revoked_at.is_(None),
            models.LoginSession.expires > now,
            models.User.enabled.is_(True),
        )
    ).one_or_none()
    if row is None:
        return None
    session_id, expires, last_used, user_id, user_name = row
    if last_used is None or now - last_used >= LAST_USED_GRANULARITY:
        session.execute(
            update(models.LoginSession)
            .where(models.LoginSession.id == session_id)
            .values(last_used=now)
        )
    return LoggedIn(session_id, user_id, user_name, expires)


def revoke(session: Session, token: str, now: datetime | None = None) -> bool:
    """End the login of ``token``; False if it was unknown or already ended."""
    done = session.execute(
        update(models.LoginSession)
        .where(
            models.LoginSession.token_hash == hash_token(token),
            models.LoginSession.revoked_at.is_(None),
        )
        .values(revoked_at=now or utcnow())
    )
    return bool(getattr(done, "rowcount", 0))


def revoke_all(
    session: Session,
    user_id: uuid.UUID,
    *,
    keep_token: str | None = None,
    now: datetime | None = None,
) -> int:
    """End every open login of a user but ``keep_token``'s; returns how many were ended."""
    query = update(models.LoginSession).where(
        models.LoginSession.user_id == user_id, models.LoginSession.revoked_at.is_(None)
    )
    if keep_token is not None:
        query = query.where(models.LoginSession.token_hash != hash_token(keep_token))
    done = session.execute(query.values(revoked_at=now or utcnow()))
    return int(getattr(done, "rowcount", 0))


def last_logins(session: Session) -> dict[uuid.UUID, datetime]:
    """When each user who ever logged in last did so, by user id."""
    rows = session.execute(
        select(models.LoginSession.user_id, func.max(models.LoginSession.created)).group_by(
            models.LoginSession.user_id
        )
    )
    return {user_id: created for user_id, created in rows}
