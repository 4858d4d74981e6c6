"""The failed-login throttle: guessing passwords gets slower the longer it goes on.

Failures are counted by the *name* tried, whether or not a user has it: an
unknown name is counted, locked out and answered exactly like a known one,
so the throttle tells nobody which names exist. After :data:`MAX_FAILURES`
failures within :data:`WINDOW`, the name is locked out for
:data:`FIRST_LOCKOUT`; each further lock-out lasts twice as long, up to
:data:`LONGEST_LOCKOUT`. While a name is locked out no password is even
checked, so a guess made then cannot succeed. A successful login clears the
name's record.

Locking out a name also locks its rightful user out for that while: the price
of not telling names apart. An administrator can clear it at once
(:func:`clear`, through ``flow user passwd``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from pyfi.db import models
from pyfi.db.types import utcnow
from pyfi.errors import LoginFailed

MAX_FAILURES = 5
WINDOW = timedelta(minutes=15)
FIRST_LOCKOUT = timedelta(seconds=30)
LONGEST_LOCKOUT = timedelta(hours=1)
# A name's record is forgotten this long after its last failure (and lock-out).
FORGET_AFTER = timedelta(days=1)


def lockout_length(lockouts_before: int) -> timedelta:
    """How long the next lock-out lasts after ``lockouts_before`` earlier ones."""
    if lockouts_before >= 16:  # 30 s doubled 16 times is far past the longest anyway
        return LONGEST_LOCKOUT
    length: timedelta = FIRST_LOCKOUT * (2**lockouts_before)
    return min(length, LONGEST_LOCKOUT)


def check_not_locked(session: Session, name: str, now: datetime | None = None) -> None:
    """Raise :class:`LoginFailed` if ``name`` is locked out now.

    The message is the same whether a user has that name or not.
    """
    now = now or utcnow()
    until = session.scalar(
        select(models.LoginFailure.locked_until).where(models.LoginFailure.name == name)
    )
    if until is not None and until > now:
        wait = max(1, int((until - now).total_seconds() + 0.999))
        raise LoginFailed(
            f"too many failed logins as {name!r}; wait {wait} s, then run `flow login` again"
        )


def record_failure(session: Session, name: str, now: datetime | None = None) -> None:
    """Count one failed login as ``name``, locking the name out when it reaches the limit."""
    now = now or utcnow()
    _forget_old(session, now)
    _insert_if_missing(session, name, now)
    row = session.scalars(
        select(models.LoginFailure).where(models.LoginFailure.name == name).with_for_update()
    ).one()
    if now - row.window_start > WINDOW:
        row.failures, row.window_start = 0, now
    row.failures += 1
    row.last_failure = now
    if row.failures >= MAX_FAILURES:
        row.locked_until = now + lockout_length(row.lockouts)
        row.lockouts += 1
        row.failures, row.window_start = 0, now
    session.flush()


def clear(session: Session, name: str) -> None:
    """Forget the failures of ``name``: after a successful login, or an administrator's reset."""
    session.execute(delete(models.LoginFailure).where(models.LoginFailure.name == name))


def _insert_if_missing(session: Session, name: str, now: datetime) -> None:
    # Two failures at once under a new name must not collide on the key.
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(
        dialect.insert(models.LoginFailure)
        .values(name=name, failures=0, window_start=now, last_failure=now, lockouts=0)
        .on_conflict_do_nothing(index_elements=["name"])
    )


def _forget_old(session: Session, now: datetime) -> None:
    """Drop records nobody has failed under for a day, so guessed names do not pile up."""
    cutoff = now - FORGET_AFTER
    session.execute(
        delete(models.LoginFailure).where(
            models.LoginFailure.last_failure < cutoff,
            (models.LoginFailure.locked_until.is_(None)) | (models.LoginFailure.locked_until < now),
        )
    )
