"""Rights checked at one chokepoint for every action of the Python API, and the audit log."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pyfi import objects
from pyfi.auth.actor import Actor, ActorKind
from pyfi.auth.audit import audit_lines
from pyfi.client.calls import Client
from pyfi.client.objects import Processor
from pyfi.config import Settings
from pyfi.db import models, schema
from pyfi.db.session import Database
from pyfi.errors import Forbidden
from pyfi.objects.kinds import KINDS
from pyfi.provenance import call_tree

PROCESSOR = {"name": "p1", "module": "pkg.mod", "gitrepo": "https://example.org/repo.git"}


def add_user(database: Database, name: str, *rights: str, roles: tuple[str, ...] = ()) -> None:
    """Add user ``name`` (as the administrator) with ``rights`` and ``roles``."""
    with database.transaction() as session:
        objects.create(
            session,
            KINDS["user"],
            {"name": name, "email": f"{name}@example.org", "password": "a-long-password"},
        )
        for right in rights:
            objects.grant(session, right, user=name)
        user = objects.get_by_name(session, models.User, name)
        objects.set_roles(session, user, roles, ())


def add_role(database: Database, name: str, *rights: str) -> None:
    with database.transaction() as session:
        objects.create(session, KINDS["role"], {"name": name})
        for right in rights:
            objects.grant(session, right, role=name)


@pytest.fixture
def as_user(database: Database) -> Iterator[Database]:
    """The same database, acting as the pyfi user joe."""
    joe = Database(database.url)
    joe.act_as(Actor("joe", ActorKind.USER))
    yield joe
    joe.dispose()


def count(database: Database, model: type) -> int:
    with database.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def refusal(action: str, right: str) -> str:
    return f"joe may not {action} (needs {right}); ask an administrator"


VERBS = {"add": "ADD", "update": "UPDATE", "delete": "DELETE"}


def _attempt(session: Session, kind: str, verb: str) -> None:
    if verb == "add":
        objects.create(session, KINDS[kind], {"name": "x1"})
    elif verb == "update":
        objects.update(session, KINDS[kind], "x1", {"new_name": "x2"})
    else:
        objects.delete(session, KINDS[kind], "x1")


@pytest.mark.parametrize("verb", list(VERBS))
@pytest.mark.parametrize("kind", list(KINDS))
def test_a_user_without_the_kinds_right_is_refused_and_nothing_changes(
    database: Database, as_user: Database, kind: str, verb: str
) -> None:
    # Given joe, who holds every right but the one this action needs
    needed = f"{VERBS[verb]}_{kind.upper()}"
    add_user(database, "joe")
    with database.transaction() as session:
        for right in ("CREATE", "UPDATE", "DELETE"):
            objects.grant(session, right, user="joe")
        objects.revoke(session, needed, user="joe")
        objects.create(session, KINDS["queue"], {"name": "q1"})
    before = count(database, KINDS[kind].model)
    # When joe tries it
    with pytest.raises(Forbidden) as refused, as_user.transaction() as session:
        _attempt(session, kind, verb)
    # Then the refusal names the right, and nothing changed
    assert refused.value.message == refusal(f"{verb} {KINDS[kind].plural}", needed)
    assert count(database, KINDS[kind].model) == before


@pytest.mark.parametrize(
    ("rights", "roles"),
    [
        (("ADD_PROCESSOR",), ()),
        ((), ("builders",)),
        (("CREATE",), ()),
        (("ALL",), ()),
    ],
    ids=["direct", "via-role", "via-CREATE", "via-ALL"],
)
def test_a_user_with_the_right_acts_and_owns_the_row(
    database: Database, as_user: Database, rights: tuple[str, ...], roles: tuple[str, ...]
) -> None:
    add_role(database, "builders", "ADD_PROCESSOR")
    add_user(database, "joe", *rights, roles=roles)
    with as_user.transaction() as session:
        objects.create(session, KINDS["processor"], PROCESSOR)
    with database.transaction() as session:
        processor = objects.get_by_name(session, models.Processor, "p1")
        # Rows a user creates record the user, not the database login
        assert processor.owner == "joe"


def test_a_revocation_beats_a_role_and_a_grant_lifts_it_at_once(
    database: Database, as_user: Database
) -> None:
    add_role(database, "builders", "ADD_QUEUE", "DELETE_QUEUE")
    add_user(database, "joe", roles=("builders",))
    with as_user.transaction() as session:
        objects.create(session, KINDS["queue"], {"name": "q1"})
    # When DELETE_QUEUE is revoked from joe although his role grants it
    with database.transaction() as session:
        objects.revoke(session, "DELETE_QUEUE", user="joe")
    # Then his next transaction is refused
    with pytest.raises(Forbidden, match="needs DELETE_QUEUE"), as_user.transaction() as session:
        objects.delete(session, KINDS["queue"], "q1")
    # And granting it again removes the revocation
    with database.transaction() as session:
        objects.grant(session, "DELETE_QUEUE", user="joe")
        user = objects.get_by_name(session, models.User, "joe")
        assert user.revoked == []
    with as_user.transaction() as session:
        objects.delete(session, KINDS["queue"], "q1")
    assert count(database, models.Queue) == 0


def test_revoking_a_broad_right_takes_everything_it_implies(
    database: Database, as_user: Database
) -> None:
    add_role(database, "admins", "ALL")
    add_user(database, "joe", roles=("admins",))
    with database.transaction() as session:
        objects.revoke(session, "CREATE", user="joe")
    with pytest.raises(Forbidden, match="needs ADD_QUEUE"), as_user.transaction() as session:
        objects.create(session, KINDS["queue"], {"name": "q1"})
    with database.transaction() as session:
        objects.create(session, KINDS["queue"], {"name": "q1"})
    with as_user.transaction() as session:  # the rest of ALL still holds
        objects.update(session, KINDS["queue"], "q1", {"new_name": "q2"})


def test_a_disabled_user_and_an_unknown_name_have_no_rights(
    database: Database, as_user: Database
) -> None:
    with pytest.raises(Forbidden) as refused, as_user.transaction() as session:
        objects.create(session, KINDS["queue"], {"name": "q1"})
    assert refused.value.message == (
        "joe may not add queues (no pyfi user named joe); ask an administrator"
    )
    add_user(database, "joe", "ALL")
    with database.transaction() as session:
        objects.update(session, KINDS["user"], "joe", {"enabled": False})
    disabled = r"\(the user joe is disabled\)"
    with pytest.raises(Forbidden, match=disabled), as_user.transaction() as session:
        objects.create(session, KINDS["queue"], {"name": "q1"})
    assert count(database, models.Queue) == 0


def test_nobody_grants_a_right_they_lack(database: Database, as_user: Database) -> None:
    add_user(database, "joe", "ADD_PRIVILEGE")
    with pytest.raises(Forbidden) as refused, as_user.transaction() as session:
        objects.grant(session, "ALL", user="joe")
    assert refused.value.message == refusal("grant ALL", "ALL")
    with pytest.raises(Forbidden) as refused, as_user.transaction() as session:
        objects.revoke(session, "ADD_PRIVILEGE", user="joe")
    assert refused.value.message == refusal("revoke rights", "DELETE_PRIVILEGE")


def test_the_object_api_and_readers_are_checked(database: Database, as_user: Database) -> None:
    add_user(database, "joe")
    with pytest.raises(Forbidden, match="needs ADD_PROCESSOR"):
        Processor("p1", module="pkg.mod", gitrepo="https://example.org/r.git", database=as_user)
    reading = r"may not read calls \(needs READ\)"
    with pytest.raises(Forbidden, match=reading), as_user.transaction() as session:
        call_tree(session, str(uuid.uuid4()))
    assert count(database, models.Processor) == 0


def test_a_user_without_run_task_cannot_send(
    database: Database, as_user: Database, tmp_path: Path
) -> None:
    add_user(database, "joe")
    broker = tmp_path / "broker"
    settings = Settings(
        database_url=database.url,
        broker_url=f"filesystem://{broker}",
        backend_url="redis://127.0.0.1:1/0",
        data_dir=tmp_path,
        ini_path=tmp_path / "pyfi.ini",
    )
    with Client(settings, as_user) as client, pytest.raises(Forbidden) as refused:
        client.send("anything", [1])
    assert refused.value.message == refusal("run tasks", "RUN_TASK")
    assert not broker.exists() or not any(broker.rglob("*.json"))


def test_the_audit_log_keeps_refusals_and_allowed_actions(
    database: Database, as_user: Database
) -> None:
    add_user(database, "joe", "ADD_QUEUE")
    with as_user.transaction() as session:
        objects.create(session, KINDS["queue"], {"name": "q1"})
    with pytest.raises(Forbidden), as_user.transaction() as session:
        objects.delete(session, KINDS["queue"], "q1")
    with database.transaction() as session:
        lines = [(line["user"], line["text"]) for line in audit_lines(session, user="joe")]
    assert lines == [
        ("joe", "allowed ADD_QUEUE: add queues (queue q1)"),
        ("joe", "refused DELETE_QUEUE: delete queues (queue q1)"),
    ]


def test_the_administrator_is_neither_checked_nor_logged(database: Database) -> None:
    with database.transaction() as session:
        objects.create(session, KINDS["queue"], {"name": "q1"})
        assert audit_lines(session) == []


def test_dropping_the_database_needs_db_drop(database: Database, as_user: Database) -> None:
    add_user(database, "joe", "ALL")
    with database.transaction() as session:
        objects.revoke(session, "DB_DROP", user="joe")
    with pytest.raises(Forbidden) as refused:
        schema.drop_all(as_user)
    assert refused.value.message == refusal("drop the database", "DB_DROP")
    assert "users" in schema.pyfi_tables(database)
