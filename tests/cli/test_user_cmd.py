"""`flow user`: add, passwd, disable/enable, ls, roles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from pyfi.db import models
from pyfi.db.session import Database
from pyfi.passwords import verify_password
from tests.cli.test_login_cmd import PASSWORD, add_user, log_in, password_file
from tests.conftest import Flow

NEW_PASSWORD = "a brand new password"


def stored_hash(database: Database, name: str) -> str:
    with database.transaction() as session:
        return str(
            session.scalars(select(models.User.password_hash).where(models.User.name == name)).one()
        )


def test_user_add_is_flow_add_user(flow: Flow, database: Database, tmp_path: Path) -> None:
    flow("user", "add", "-n", "ann", "-e", "ann@example.com", "--password-file",
         password_file(tmp_path, PASSWORD))  # fmt: skip
    assert verify_password(stored_hash(database, "ann"), PASSWORD)


def test_passwd_of_your_own_needs_the_current_password(
    flow: Flow, database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given joe logged in, and a second login of his held by a script
    add_user(flow, tmp_path)
    other = log_in(flow, tmp_path, "--print-token").stdout.strip()
    log_in(flow, tmp_path)
    old_file = ("--old-password-file", password_file(tmp_path, "not my password"))
    new_file = ("--password-file", password_file(tmp_path, NEW_PASSWORD))
    # When joe gives a wrong current password, nothing changes
    assert "current password is wrong" in flow.fails("user", "passwd", *old_file, *new_file)
    assert verify_password(stored_hash(database, "joe"), PASSWORD)
    # When joe gives the right one (asked for, hidden), the password changes
    done = flow("user", "passwd", *new_file, input=PASSWORD + "\n")
    assert "Changed the password of joe; ended 1 login." in done.output
    assert NEW_PASSWORD not in done.output
    assert PASSWORD not in done.output
    assert verify_password(stored_hash(database, "joe"), NEW_PASSWORD)
    # and joe's other login ended, while this one goes on
    assert json.loads(flow("whoami", "--json").output)["user"] == "joe"
    monkeypatch.setenv("PYFI_TOKEN", other)
    assert "expired or was revoked" in flow.fails("whoami")


def test_passwd_of_another_user_is_for_administrators(
    flow: Flow, database: Database, tmp_path: Path
) -> None:
    # Given joe and ann; joe logged in, holding no right
    add_user(flow, tmp_path)
    add_user(flow, tmp_path, "ann")
    new_file = ("--password-file", password_file(tmp_path, NEW_PASSWORD))
    log_in(flow, tmp_path)
    # When joe tries to reset ann's password, he is refused
    refusal = flow.fails("user", "passwd", "-n", "ann", *new_file)
    assert refusal.strip() == (
        "Error: joe may not reset ann's password (needs ALL); ask an administrator"
    )
    assert verify_password(stored_hash(database, "ann"), PASSWORD)
    # When the administrator (no login: the connection's owner) resets it, it changes
    flow("logout")
    flow("user", "passwd", "-n", "ann", *new_file)
    assert verify_password(stored_hash(database, "ann"), NEW_PASSWORD)


def test_disabling_others_needs_update_user(flow: Flow, tmp_path: Path) -> None:
    # Given joe, holding no right, logged in, and ann
    add_user(flow, tmp_path)
    add_user(flow, tmp_path, "ann")
    log_in(flow, tmp_path)
    # When joe disables ann, he is refused, and ann stays enabled
    refusal = flow.fails("user", "disable", "-n", "ann")
    assert "joe may not disable users (needs UPDATE_USER)" in refusal
    flow("logout")
    listed = json.loads(flow("user", "ls", "--json").output)
    assert {row["name"]: row["enabled"] for row in listed}["ann"] is True


def test_a_role_gives_no_more_than_its_giver_holds(flow: Flow, tmp_path: Path) -> None:
    # Given joe, who may change users (UPDATE_USER) but holds nothing else, logged in
    add_user(flow, tmp_path)
    flow("add", "privilege", "-u", "joe", "-n", "UPDATE_USER")
    flow("add", "role", "-n", "admins")
    flow("add", "privilege", "-r", "admins", "-n", "ALL")
    log_in(flow, tmp_path)
    # When joe gives himself the role that holds ALL, he is refused
    refusal = flow.fails("user", "roles", "-n", "joe", "--add", "admins")
    assert "joe may not give the role admins (it grants ALL) (needs ALL)" in refusal
    # Then he still has no role
    assert "joe has no roles" in flow("user", "roles", "-n", "joe").output


def test_user_ls_and_roles(flow: Flow, tmp_path: Path) -> None:
    # Given joe, and a role developers holding ADD_PROCESSOR
    add_user(flow, tmp_path)
    flow("add", "role", "-n", "developers")
    flow("add", "privilege", "-r", "developers", "-n", "ADD_PROCESSOR")
    # When joe is given the role
    flow("user", "roles", "-n", "joe", "--add", "developers")
    # Then his roles and their rights show, in `flow user roles` and in whoami once he logs in
    shown = json.loads(flow("user", "roles", "-n", "joe", "--json").output)
    assert shown == [{"role": "developers", "privileges": ["ADD_PROCESSOR"]}]
    log_in(flow, tmp_path)
    me = json.loads(flow("whoami", "--json").output)
    assert me["roles"] == [{"name": "developers", "privileges": ["ADD_PROCESSOR"]}]
    flow("logout")
    # and `flow user ls` lists him with the role and a last login; never a password hash
    listed = {row["name"]: row for row in json.loads(flow("user", "ls", "--json").output)}
    assert listed["joe"]["roles"] == ["developers"]
    assert listed["joe"]["last_login"] is not None
    assert "argon2" not in flow("user", "ls").output
    # When the role is taken away, it is gone
    flow("user", "roles", "-n", "joe", "--remove", "developers")
    assert "joe has no roles" in flow("user", "roles", "-n", "joe").output


def test_disable_yourself_is_refused(flow: Flow, tmp_path: Path) -> None:
    # Given joe, who may disable users, logged in
    add_user(flow, tmp_path)
    flow("add", "privilege", "-u", "joe", "-n", "UPDATE_USER")
    log_in(flow, tmp_path)
    assert "cannot disable yourself" in flow.fails("user", "disable", "-n", "joe")


@pytest.mark.parametrize(
    "change", [("--disabled",), ("--password-file", "NEW")], ids=["disabled", "password"]
)
def test_flow_update_user_ends_logins_too(
    flow: Flow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: tuple[str, ...]
) -> None:
    # Given joe's login, held by a script
    add_user(flow, tmp_path)
    token = log_in(flow, tmp_path, "--print-token").stdout.strip()
    # When joe is disabled, or given a new password, through `flow update user` (and enabled again)
    new_file = password_file(tmp_path, NEW_PASSWORD)
    flow("update", "user", "-n", "joe", *(new_file if arg == "NEW" else arg for arg in change))
    flow("update", "user", "-n", "joe", "--enabled")
    # Then the old login stays ended
    monkeypatch.setenv("PYFI_TOKEN", token)
    assert "expired or was revoked" in flow.fails("whoami")
