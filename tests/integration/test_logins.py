"""Login sessions and the failed-login throttle, against both databases."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from pyfi.auth import throttle, tokens
from pyfi.auth.login import authenticate, log_in
from pyfi.db import models
from pyfi.db.session import Database
from pyfi.db.types import utcnow
from pyfi.errors import LoginFailed
from pyfi.passwords import hash_password

PASSWORD = "correct horse battery"


@pytest.fixture
def joe(database: Database) -> models.User:
    with database.transaction() as session:
        user = models.User(
            name="joe", email="joe@example.com", password_hash=hash_password(PASSWORD)
        )
        session.add(user)
    return user


def test_a_login_lasts_the_hours_asked_for(database: Database, joe: models.User) -> None:
    before = utcnow()
    issued = log_in(database, "joe", PASSWORD, hours=2)
    assert timedelta(hours=2) <= issued.expires - before < timedelta(hours=2, minutes=1)
    with database.transaction() as session:
        assert tokens.logged_in(session, issued.token, now=issued.expires - timedelta(seconds=1))
        assert tokens.logged_in(session, issued.token, now=issued.expires) is None


def test_last_used_is_written_at_most_every_few_minutes(
    database: Database, joe: models.User
) -> None:
    issued = log_in(database, "joe", PASSWORD, hours=1)
    start = utcnow()

    def last_used() -> object:
        with database.transaction() as session:
            return session.scalar(select(models.LoginSession.last_used))

    for offset in (timedelta(0), timedelta(minutes=1), tokens.LAST_USED_GRANULARITY):
        with database.transaction() as session:
            tokens.logged_in(session, issued.token, now=start + offset)
        if offset == timedelta(minutes=1):
            assert last_used() == start  # a minute later: not written again
    assert last_used() == start + tokens.LAST_USED_GRANULARITY


def test_each_lockout_lasts_twice_as_long(database: Database) -> None:
    # Given a name failed five times at t0
    t0 = utcnow()
    with database.transaction() as session:
        for _ in range(throttle.MAX_FAILURES):
            throttle.record_failure(session, "joe", t0)
        first = session.scalar(select(models.LoginFailure.locked_until))
    # When it fails five more times after the first lock-out ends
    t1 = t0 + throttle.FIRST_LOCKOUT + timedelta(seconds=1)
    with database.transaction() as session:
        for _ in range(throttle.MAX_FAILURES):
            throttle.record_failure(session, "joe", t1)
        second = session.scalar(select(models.LoginFailure.locked_until))
    # Then the second lock-out is twice the first
    assert first == t0 + throttle.FIRST_LOCKOUT
    assert second == t1 + 2 * throttle.FIRST_LOCKOUT
    assert throttle.lockout_length(30) == throttle.LONGEST_LOCKOUT


def test_failures_outside_the_window_do_not_add_up(database: Database, joe: models.User) -> None:
    t0 = utcnow()
    with database.transaction() as session:
        for minute in range(throttle.MAX_FAILURES * 2):
            # one failure every four minutes: never five within fifteen
            throttle.record_failure(session, "joe", t0 + timedelta(minutes=4 * minute))
        throttle.check_not_locked(session, "joe", t0 + timedelta(minutes=40))
        assert authenticate(session, "joe", PASSWORD, t0 + timedelta(minutes=40)) is not None


def test_a_locked_out_name_is_not_even_checked(database: Database, joe: models.User) -> None:
    now = utcnow()
    with database.transaction() as session:
        for _ in range(throttle.MAX_FAILURES):
            assert authenticate(session, "joe", "wrong password", now) is None
    with database.transaction() as session, pytest.raises(LoginFailed, match="too many"):
        authenticate(session, "joe", PASSWORD, now)


@pytest.mark.parametrize("name", ["x" * 500, "no spaces", ""])
def test_a_name_no_user_can_have_is_refused_like_any_other(database: Database, name: str) -> None:
    with pytest.raises(LoginFailed, match="wrong name or password"):
        log_in(database, name, PASSWORD, hours=1)
