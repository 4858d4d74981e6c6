"""Who a connection acts as before any login (pyfi.auth.actor)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from pyfi.auth.actor import ActorKind, actor_of
from pyfi.db.session import Database


def test_the_embedded_database_acts_as_its_os_user_as_administrator(sqlite_url: str) -> None:
    import getpass

    database = Database(sqlite_url)
    assert database.actor.kind is ActorKind.ADMINISTRATOR
    assert database.actor.name == getpass.getuser()
    assert database.actor.via == "os-user"


@pytest.fixture
def plain_login(postgres_url: str) -> Iterator[str]:
    """A PostgreSQL login that is neither a superuser nor the database's owner."""
    name = f"joe_{uuid.uuid4().hex[:8]}"
    admin = Database(postgres_url)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE ROLE "{name}" LOGIN'))
        conn.commit()
    try:
        yield make_url(postgres_url).set(username=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP ROLE "{name}"'))
            conn.commit()
        admin.dispose()


def test_a_superuser_connection_acts_as_administrator(postgres_url: str) -> None:
    database = Database(postgres_url)
    assert database.actor.kind is ActorKind.ADMINISTRATOR
    database.dispose()


def test_a_plain_login_acts_as_the_pyfi_user_of_its_name(plain_login: str) -> None:
    database = Database(plain_login)
    actor = database.actor
    assert actor.kind is ActorKind.USER
    assert actor.name == make_url(plain_login).username
    database.dispose()


def test_every_transaction_carries_its_actor(sqlite_url: str) -> None:
    database = Database(sqlite_url)
    with database.transaction() as session:
        assert actor_of(session) == database.actor
