"""`flow login`, `flow logout`, `flow whoami`: tokens, their file, and every way a login ends."""

from __future__ import annotations

import hashlib
import json
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import Result
from sqlalchemy import select, update

from pyfi.auth.token_store import default_store_path
from pyfi.client.connection import connect, disconnect
from pyfi.db import models
from pyfi.db.session import Database
from pyfi.db.types import utcnow
from pyfi.errors import NotLoggedIn
from tests.conftest import Flow

PASSWORD = "correct horse battery"
EXPIRED = "Error: your login has expired or was revoked; run `flow login`"


def password_file(folder: Path, password: str) -> str:
    """A file holding ``password``, for --password-file."""
    path = folder / f"pw-{hashlib.sha256(password.encode()).hexdigest()[:8]}"
    path.write_text(password + "\n", encoding="utf-8")
    return str(path)


def add_user(flow: Flow, folder: Path, name: str = "joe", password: str = PASSWORD) -> None:
    """Add a user through `flow add user`, the password read from a file."""
    email = f"{name}@example.com"
    flow("add", "user", "-n", name, "-e", email, "--password-file", password_file(folder, password))


def log_in(
    flow: Flow, folder: Path, *extra: str, name: str = "joe", password: str = PASSWORD
) -> Result:
    """`flow login` as ``name``, the password read from a file."""
    return flow("login", "-n", name, "--password-file", password_file(folder, password), *extra)


def whoami(flow: Flow) -> dict[str, object]:
    return dict(json.loads(flow("whoami", "--json").output))


def test_login_keeps_a_0600_token_and_whoami_shows_the_user(flow: Flow, tmp_path: Path) -> None:
    # Given a user joe
    add_user(flow, tmp_path)
    # When joe logs in
    done = log_in(flow, tmp_path)
    # Then the token file is readable by its owner only, and holds no password
    assert "Logged in" in done.output
    assert "joe" in done.output
    path = default_store_path()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert PASSWORD not in path.read_text()
    assert PASSWORD not in done.output
    # and whoami names joe, identified by the token
    me = whoami(flow)
    assert (me["user"], me["identified_by"], me["kind"]) == ("joe", "token", "user")
    assert "identified by: a login token" in flow("whoami").output


def test_the_python_api_acts_as_the_logged_in_user(flow: Flow, tmp_path: Path) -> None:
    # Given joe logged in with `flow login`
    add_user(flow, tmp_path)
    log_in(flow, tmp_path)
    # When a script opens the default connection
    client = connect()
    try:
        actor = client.database.actor
    finally:
        disconnect()
    # Then it acts as joe, through the token
    assert (actor.name, actor.via) == ("joe", "token")


def test_connect_takes_a_token_of_its_own(flow: Flow, tmp_path: Path) -> None:
    # Given a token printed for joe, nothing kept in the file
    add_user(flow, tmp_path)
    token = log_in(flow, tmp_path, "--print-token").stdout.strip()
    # When a script connects with it, it acts as joe
    try:
        assert connect(token=token).database.actor.name == "joe"
        # and with a forged one, the first database access says to log in
        forged = connect(token="pyfi_forged")
        with pytest.raises(NotLoggedIn, match="flow login"):
            forged.database.actor  # noqa: B018
    finally:
        disconnect()


def test_token_is_stored_hashed(flow: Flow, database: Database, tmp_path: Path) -> None:
    # Given joe logged in
    add_user(flow, tmp_path)
    log_in(flow, tmp_path)
    token = next(iter(json.loads(default_store_path().read_text()).values()))
    # When the login_sessions table is read whole
    with database.transaction() as session:
        rows = [tuple(map(str, row)) for row in session.execute(select(models.LoginSession))]
        hashes = list(session.scalars(select(models.LoginSession.token_hash)))
    # Then the token appears nowhere, only its SHA-256
    assert not any(token in value for row in rows for value in row)
    assert hashes == [hashlib.sha256(token.encode()).hexdigest()]
    # and a dump of the database (by the administrator) shows neither
    flow("logout")
    dump = flow("db", "json").output
    assert token not in dump
    assert hashes[0] not in dump


def test_wrong_password_and_unknown_user_get_the_same_answer(flow: Flow, tmp_path: Path) -> None:
    # Given a user joe
    add_user(flow, tmp_path)
    # When joe's password is wrong, and when the user does not exist
    wrong = flow.fails("login", "-n", "joe", "--password-file", password_file(tmp_path, "nope1234"))
    unknown = flow.fails(
        "login", "-n", "nobody", "--password-file", password_file(tmp_path, PASSWORD)
    )
    # Then both exit 2 with one identical line, and nothing is kept
    assert wrong == unknown
    assert "wrong name or password" in wrong
    assert not default_store_path().exists()


@pytest.mark.parametrize("name", ["joe", "nobody"])
def test_repeated_failures_lock_the_name_out(
    flow: Flow, database: Database, tmp_path: Path, name: str
) -> None:
    # Given five failed logins under one name (a user's, or no one's)
    add_user(flow, tmp_path)
    for _ in range(5):
        flow.fails("login", "-n", name, "--password-file", password_file(tmp_path, "nope1234"))
    # When the right password is tried next
    refused = flow.fails("login", "-n", name, "--password-file", password_file(tmp_path, PASSWORD))
    # Then it is refused all the same, with one line that does not tell whether the name exists
    assert refused.startswith(f"Error: too many failed logins as '{name}'; wait ")
    assert not default_store_path().exists()
    # and once the lock-out is over, the right password logs joe in
    with database.transaction() as session:
        session.execute(update(models.LoginFailure).values(locked_until=utcnow()))
    if name == "joe":
        log_in(flow, tmp_path)
        assert whoami(flow)["user"] == "joe"


def test_password_is_never_taken_from_the_command_line(flow: Flow, tmp_path: Path) -> None:
    # Given a user joe
    add_user(flow, tmp_path)
    # When the password is given as an argument
    error = flow.fails("login", "-n", "joe", "-p", PASSWORD)
    # Then it is refused, without repeating it, and no login is made
    assert "never taken on the command line" in error
    assert PASSWORD not in error
    assert not default_store_path().exists()


def test_password_from_the_environment_and_the_prompt(
    flow: Flow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_user(flow, tmp_path)
    # A hidden prompt, asked once
    done = flow("login", "-n", "joe", input=PASSWORD + "\n")
    assert PASSWORD not in done.output
    # PYFI_PASSWORD, for scripts
    monkeypatch.setenv("PYFI_PASSWORD", PASSWORD)
    assert "Logged in" in flow("login", "-n", "joe").output


def test_expired_login_asks_to_log_in_again(flow: Flow, database: Database, tmp_path: Path) -> None:
    # Given joe's login, expired
    add_user(flow, tmp_path)
    log_in(flow, tmp_path)
    with database.transaction() as session:
        session.execute(update(models.LoginSession).values(expires=utcnow() - timedelta(seconds=1)))
    # When joe runs a command
    error = flow.fails("ls", "queues")
    # Then it asks for a new login, exit 2
    assert error.startswith(EXPIRED)
    # and logging in again works despite the stale token
    log_in(flow, tmp_path)
    assert whoami(flow)["user"] == "joe"


def test_logout_ends_the_login_everywhere(
    flow: Flow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given joe logged in, and a copy of the token (as a script would hold it)
    add_user(flow, tmp_path)
    log_in(flow, tmp_path)
    token = next(iter(json.loads(default_store_path().read_text()).values()))
    # When joe logs out
    assert "Logged out" in flow("logout").output
    # Then the file is gone, and the copied token no longer works
    assert not default_store_path().exists()
    monkeypatch.setenv("PYFI_TOKEN", token)
    assert flow.fails("whoami").startswith(EXPIRED)


def test_pyfi_token_takes_the_place_of_the_file(
    flow: Flow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two users; joe's token printed for a script, ann logged in with the file
    add_user(flow, tmp_path)
    add_user(flow, tmp_path, "ann")
    printed = log_in(flow, tmp_path, "--print-token")
    token = printed.stdout.strip()
    assert token.startswith("pyfi_")
    assert not default_store_path().exists()
    log_in(flow, tmp_path, name="ann")
    # When PYFI_TOKEN holds joe's token
    monkeypatch.setenv("PYFI_TOKEN", token)
    # Then the commands act as joe
    assert whoami(flow)["user"] == "joe"
    # and a wrong PYFI_TOKEN stops them, naming it
    monkeypatch.setenv("PYFI_TOKEN", "pyfi_forged")
    assert "PYFI_TOKEN" in flow.fails("whoami")


def test_disabling_a_user_ends_their_logins(
    flow: Flow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given joe's login, held by a script
    add_user(flow, tmp_path)
    token = log_in(flow, tmp_path, "--print-token").stdout.strip()
    # When an administrator disables joe
    assert "ended 1 login" in flow("user", "disable", "-n", "joe").output
    # Then joe's token stops working at once, and joe cannot log in again
    monkeypatch.setenv("PYFI_TOKEN", token)
    assert flow.fails("whoami").startswith(EXPIRED)
    monkeypatch.delenv("PYFI_TOKEN")
    assert "disabled" in flow.fails(
        "login", "-n", "joe", "--password-file", password_file(tmp_path, PASSWORD)
    )
    # until enabled again, when he logs in afresh: the old login stays ended
    flow("user", "enable", "-n", "joe")
    log_in(flow, tmp_path)
    monkeypatch.setenv("PYFI_TOKEN", token)
    assert flow.fails("whoami").startswith(EXPIRED)


def test_whoami_without_login_names_the_connection(flow: Flow, database: Database) -> None:
    # Given no login
    # When whoami runs
    me = whoami(flow)
    # Then it names the connection's identity and the database login
    assert me["identified_by"] == ("os-user" if database.is_sqlite else "database-login")
    assert me["database_login"] == database.current_user()
    assert me["administrator"] is True
