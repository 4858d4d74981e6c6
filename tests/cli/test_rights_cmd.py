"""Every kind of `flow` action, by a user without its right: refused, exit 2, nothing changed.

The limited user is a plain PostgreSQL login named like the pyfi user (the
CLI acts as the pyfi user of its database login); the login is granted the
test schema's tables so that only pyfi's rights stand in its way.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result
from sqlalchemy import text
from sqlalchemy.engine import make_url

from pyfi.db import models
from pyfi.db.session import Database
from tests.conftest import Flow, count_rows, requires_postgres

pytestmark = [pytest.mark.postgres, requires_postgres]

TYPED = "a-long-password\na-long-password\n"


@pytest.fixture
def database_url(postgres_url: str) -> str:
    """These tests need a second login, so PostgreSQL only."""
    return postgres_url


class Limited:
    """`flow` as the pyfi user ``name``, through a PostgreSQL login of that name."""

    def __init__(self, admin: Flow, url: str, name: str) -> None:
        self.admin, self.url, self.name = admin, url, name

    def __call__(self, *args: str, ok: bool = True, input: str | None = None) -> Result:
        return self.admin("--db", self.url, *args, ok=ok, input=input)

    def fails(self, *args: str, input: str | None = None) -> str:
        return self.admin.fails("--db", self.url, *args, input=input)

    def grant(self, *rights: str) -> None:
        for right in rights:
            self.admin("add", "privilege", "-n", right, "-u", self.name)

    def revoke(self, *rights: str) -> None:
        for right in rights:
            self.admin("delete", "privilege", "-n", right, "-u", self.name)


@pytest.fixture
def joe(flow: Flow, database: Database) -> Iterator[Limited]:
    name = f"joe_{uuid.uuid4().hex[:8]}"
    with database.connect() as conn:
        current = conn.execute(text("SELECT current_schema()")).scalar_one()
        conn.execute(text(f'CREATE ROLE "{name}" LOGIN'))
        conn.execute(text(f'GRANT USAGE ON SCHEMA "{current}" TO "{name}"'))
        conn.execute(text(f'GRANT ALL ON ALL TABLES IN SCHEMA "{current}" TO "{name}"'))
        conn.commit()
    flow("add", "user", "-n", name, "-e", f"{name}@example.org", input=TYPED)
    url = make_url(database.url).set(username=name).render_as_string(hide_password=False)
    try:
        yield Limited(flow, url, name)
    finally:
        with database.connect() as conn:
            conn.execute(text(f'DROP OWNED BY "{name}"'))
            conn.execute(text(f'DROP ROLE "{name}"'))
            conn.commit()


def refusal(name: str, action: str, right: str) -> str:
    return f"Error: {name} may not {action} (needs {right}); ask an administrator"


def snapshot(database: Database) -> dict[str, object]:
    """What an action could change: row counts and each processor's wanted state."""
    with database.transaction() as session:
        processors = {
            p.name: (p.requested_status.value, p.gitrepo)
            for p in session.query(models.Processor).all()
        }
    counts = {
        table: count_rows(database, model)
        for table, model in (
            ("queues", models.Queue),
            ("processors", models.Processor),
            ("sockets", models.Socket),
            ("plugs", models.Plug),
            ("privileges", models.user_privileges),
            ("roles", models.Role),
        )
    }
    return {"wanted": processors, **counts}


SOCKET = "pyfi.processors.sample.do_something"

# (command line, action, right): each refused for a user who lacks the right.
REFUSED: list[tuple[tuple[str, ...], str, str]] = [
    (("add", "queue", "-n", "q9"), "add queues", "ADD_QUEUE"),
    (
        ("update", "processor", "-n", "proc1", "-g", "https://evil.example/x.git"),
        "update processors",
        "UPDATE_PROCESSOR",
    ),
    (("delete", "processor", "-n", "proc1"), "delete processors", "DELETE_PROCESSOR"),
    (("delete", "socket", "-n", SOCKET), "delete sockets", "DELETE_SOCKET"),
    (("delete", "plug", "-n", "plug1"), "delete plugs", "DELETE_PLUG"),
    (("add", "role", "-n", "r9"), "add roles", "ADD_ROLE"),
    (("ls", "processors"), "list processors", "LS_PROCESSORS"),
    (("ls", "queues"), "list queues", "LS_QUEUES"),
    (("ls", "processor", "-n", "proc1"), "read processors", "READ_PROCESSOR"),
    (("ls", "calls"), "list calls", "READ"),
    (("ls", "log"), "read the audit log", "READ_LOG"),
    (("add", "privilege", "-n", "ALL", "-u", "{me}"), "grant rights", "ADD_PRIVILEGE"),
    (("proc", "start", "-n", "proc1"), "start processors", "START_PROCESSOR"),
    (("proc", "stop", "-n", "proc1"), "stop processors", "STOP_PROCESSOR"),
    (("proc", "pause", "-n", "proc1"), "pause processors", "PAUSE_PROCESSOR"),
    (("task", "run", "-s", SOCKET, "-d", "1", "--nowait"), "run tasks", "RUN_TASK"),
    (("dlq", "replay", "-s", SOCKET), "replay dead letters", "RUN_TASK"),
    (("db", "drop", "--yes"), "drop the database", "DB_DROP"),
    (("db", "init"), "initialise the database", "DB_INIT"),
    (("agent", "start", "-n", "a1"), "start agents", "START_AGENT"),
    (("worker", "start", "--processor", "proc1"), "start workers", "START_AGENT"),
    (("update", "user", "-n", "{me}", "--add-role", "r1"), "change users' roles", "UPDATE_USER"),
]


@pytest.mark.usefixtures("first_flow")
def test_an_action_without_its_right_is_refused_and_changes_nothing(
    joe: Limited, database: Database
) -> None:
    # (One network for every action: each is refused and changes nothing, so
    # none disturbs the next; a network per action cost a minute of setup.)
    joe.grant("ALL")
    for command, action, right in REFUSED:
        # Given joe, with every right but the one needed
        joe.revoke(right)
        before = snapshot(database)
        # When joe tries the action, then it is refused, naming the right, exit 2
        line = joe.fails(*(part.format(me=joe.name) for part in command))
        assert line == refusal(joe.name, action, right), command
        assert snapshot(database) == before, command
        # And the refusal is in the audit log
        lines = json.loads(joe.admin("ls", "log", "--user", joe.name, "--json").output)
        assert lines[-1]["text"].startswith(f"refused {right}: {action}"), command
        joe.grant(right)


@pytest.mark.usefixtures("first_flow")
def test_compose_apply_needs_each_objects_right_and_a_dry_run_only_read(
    joe: Limited, database: Database, tmp_path: Path
) -> None:
    file = tmp_path / "net.yaml"
    file.write_text(
        "queues:\n  - name: q2\nprocessors:\n"
        "  - name: proc1\n    gitrepo: https://evil.example/x.git\n"
    )
    joe.grant("ADD_QUEUE", "READ")
    before = snapshot(database)
    assert joe.fails("compose", "apply", str(file)).endswith(
        f"{joe.name} may not update processors (needs UPDATE_PROCESSOR); ask an administrator"
    )
    assert snapshot(database) == before
    # A dry run needs only READ
    assert "would create queue q2" in joe("compose", "apply", "--dry-run", str(file)).output
    assert snapshot(database) == before
    # With UPDATE (which implies UPDATE_PROCESSOR) it applies
    joe.grant("UPDATE")
    joe("compose", "apply", str(file))
    assert snapshot(database)["wanted"]["proc1"][1] == "https://evil.example/x.git"


@pytest.mark.usefixtures("first_flow")
def test_rights_granted_directly_via_a_role_or_implied_let_the_user_act(
    joe: Limited, database: Database
) -> None:
    joe.fails("proc", "start", "-n", "proc1")
    # Via a role
    joe.admin("add", "role", "-n", "operators")
    joe.admin("add", "privilege", "-n", "START_PROCESSOR", "-r", "operators")
    joe.admin("update", "user", "-n", joe.name, "--add-role", "operators")
    joe("proc", "start", "-n", "proc1")
    # A revocation beats the role, at once
    joe.revoke("START_PROCESSOR")
    joe.fails("proc", "start", "-n", "proc1")
    joe.grant("START_PROCESSOR")
    joe("proc", "start", "-n", "proc1")
    # READ implies LS_*; the owner of what joe adds is joe
    joe.grant("READ", "CREATE")
    joe("ls", "processors")
    joe("add", "queue", "-n", "q7")
    queues = json.loads(joe("ls", "queues", "--json").output)
    assert {q["name"]: q["owner"] for q in queues}["q7"] == joe.name
    lines = json.loads(joe.admin("ls", "log", "--user", joe.name, "--json").output)
    outcomes = [line["text"].split(":")[0] for line in lines]
    assert outcomes[:3] == [
        "refused START_PROCESSOR",
        "allowed START_PROCESSOR",
        "refused START_PROCESSOR",
    ]
    assert "allowed ADD_QUEUE" in outcomes


def test_ls_log_filters_by_time(joe: Limited) -> None:
    joe.fails("ls", "queues")
    assert json.loads(joe.admin("ls", "log", "--since", "1h", "--json").output)
    assert json.loads(joe.admin("ls", "log", "--since", "2999-01-01", "--json").output) == []
    assert "neither a time" in joe.admin.fails("ls", "log", "--since", "yesterday")
