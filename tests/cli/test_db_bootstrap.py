"""`flow db init` makes the first administrator: asked for, from the environment, or the OS user."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import pytest
from sqlalchemy import select

from pyfi.auth.bootstrap import ADMINISTRATORS, administrator_exists
from pyfi.db import models, schema
from pyfi.db.enums import Right
from pyfi.db.session import Database
from tests.conftest import Flow, count_rows, requires_postgres

PASSWORD = "first admin password"


def held_rights(database: Database, name: str) -> tuple[list[Right], list[str]]:
    """The rights a user holds directly, and the names of their roles."""
    with database.transaction() as session:
        user = session.scalars(select(models.User).where(models.User.name == name)).one()
        return [p.name for p in user.privileges], [r.name for r in user.roles]


@requires_postgres
@pytest.mark.postgres
def test_init_on_postgres_creates_the_administrator_from_the_environment(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a new PostgreSQL database and the administrator in the environment
    flow = Flow(postgres_url, monkeypatch)
    monkeypatch.setenv("PYFI_ADMIN_NAME", "alice")
    monkeypatch.setenv("PYFI_ADMIN_PASSWORD", PASSWORD)
    # When it is initialised
    done = flow("db", "init")
    # Then alice holds ALL, directly and through the administrators role
    assert "Created the administrator alice" in done.output
    assert PASSWORD not in done.output
    database = Database(postgres_url)
    try:
        assert held_rights(database, "alice") == ([Right.ALL], [ADMINISTRATORS])
        with database.transaction() as session:
            role = session.scalars(
                select(models.Role).where(models.Role.name == ADMINISTRATORS)
            ).one()
            assert [p.name for p in role.privileges] == [Right.ALL]
    finally:
        database.dispose()
    # and she can log in with that password
    monkeypatch.delenv("PYFI_ADMIN_PASSWORD")
    monkeypatch.setenv("PYFI_PASSWORD", PASSWORD)
    flow("login", "-n", "alice")
    assert json.loads(flow("whoami", "--json").output)["user"] == "alice"


@requires_postgres
@pytest.mark.postgres
def test_init_on_postgres_reads_the_password_from_a_file(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    flow = Flow(postgres_url, monkeypatch)
    secret = tmp_path / "admin-password"
    secret.write_text(PASSWORD + "\n")
    flow("db", "init", "--admin-name", "alice", "--admin-password-file", str(secret))
    database = Database(postgres_url)
    try:
        assert held_rights(database, "alice") == ([Right.ALL], [ADMINISTRATORS])
    finally:
        database.dispose()


@requires_postgres
@pytest.mark.postgres
def test_init_without_a_terminal_or_administrator_says_none_exists(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a new PostgreSQL database, no administrator given, stdin no terminal
    flow = Flow(postgres_url, monkeypatch)
    # When it is initialised with answers waiting on stdin
    done = flow("db", "init", input=f"mallory\n{PASSWORD}\n{PASSWORD}\n")
    # Then nothing is asked: the tables exist, no user does, and one line says how to make one
    assert "Initialised the database" in done.output
    assert "Password" not in done.output
    assert "no pyfi administrator exists yet" in done.stderr
    database = Database(postgres_url)
    try:
        assert count_rows(database, models.User) == 0
        with database.transaction() as session:
            assert not administrator_exists(session)
    finally:
        database.dispose()


@requires_postgres
@pytest.mark.postgres
def test_init_refuses_a_name_without_a_password_before_creating_anything(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow = Flow(postgres_url, monkeypatch)
    monkeypatch.setenv("PYFI_ADMIN_NAME", "alice")
    error = flow.fails("db", "init")
    assert "PYFI_ADMIN_PASSWORD" in error
    database = Database(postgres_url)
    try:
        assert schema.current_revision(database) is None
    finally:
        database.dispose()


@requires_postgres
@pytest.mark.postgres
def test_init_refuses_a_short_password(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    flow = Flow(postgres_url, monkeypatch)
    monkeypatch.setenv("PYFI_ADMIN_NAME", "alice")
    monkeypatch.setenv("PYFI_ADMIN_PASSWORD", "short")
    assert "too short" in flow.fails("db", "init")


def test_init_on_sqlite_makes_the_os_user_administrator(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a new embedded database
    flow = Flow(sqlite_url, monkeypatch)
    # When it is initialised (no administrator asked for)
    done = flow("db", "init")
    # Then the OS user is its administrator, with a row holding ALL and no password
    me = getpass.getuser()
    assert f"The administrator is you, {me}" in done.output
    database = Database(sqlite_url)
    try:
        assert held_rights(database, me) == ([Right.ALL], [ADMINISTRATORS])
    finally:
        database.dispose()
    whoami = json.loads(flow("whoami", "--json").output)
    assert (whoami["user"], whoami["identified_by"]) == (me, "os-user")
    assert whoami["privileges"] == ["ALL"]
    # and no password logs in as that user
    assert "wrong name or password" in flow.fails("login", "-n", me, input="!\n")
