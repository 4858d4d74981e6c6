"""Networks declared with decorators: collected, applied once, idempotent, refused as a whole."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from pyfi.db import models
from pyfi.db.session import Database
from pyfi.errors import InvalidNetwork, InvalidValue, NetworkFileError
from pyfi.network.declare import Network, PlugDecl, QueueDecl, SocketDecl, apply
from pyfi.network.module import collecting, load_network
from tests.conftest import count_rows
from tests.networks.rows import TABLES, dump, statements, writes

NETWORKS = Path(__file__).resolve().parents[1] / "networks"
DECORATED = NETWORKS / "decorated.py"
GIT_REPO = "https://github.com/radiantone/pyfi-processors"


@pytest.fixture(autouse=True)
def git_repo(monkeypatch: pytest.MonkeyPatch) -> str:
    """The reference example reads its repository from GIT_REPO."""
    monkeypatch.setenv("GIT_REPO", GIT_REPO)
    return GIT_REPO


def apply_file(database: Database, path: Path) -> Any:
    network = load_network(path)
    with database.transaction() as session:
        return apply(session, network)


def write_module(tmp_path: Path, body: str, name: str = "net.py") -> Path:
    path = tmp_path / name
    header = "from pyfi.client.decorators import ProcessorBase, plug, processor, socket\n"
    path.write_text(header + textwrap.dedent(body))
    return path


def test_decorated_module_collects_without_writing(database: Database) -> None:
    # When the reference module is loaded in collecting mode
    network = load_network(DECORATED)
    # Then every declaration is there, with each class-body socket on its class's processor
    assert list(network.processors) == ["proc2", "proc1", "proc3"]
    assert network.sockets["proc2.do_this"].processor == "proc2"
    assert network.plugs["plug1"].source == "proc1.do_something"
    assert network.queues["queue1"].fields == {
        "message_ttl": 300000,
        "durable": True,
        "expires": 200,
    }
    assert [p.name for p in network.sockets["proc2.do_this"].parameters or ()] == ["message"]
    # And nothing was written while it imported
    assert all(count_rows(database, model) == 0 for model in TABLES)


def test_decorated_module_applied_twice_is_identical_and_writes_nothing(
    database: Database,
) -> None:
    # Given the reference network applied once
    first = apply_file(database, DECORATED)
    assert first.created == {
        "queue": ["sockq2", "sockq1", "queue1", "sockq3", "queue2"],
        "processor": ["proc2", "proc1", "proc3"],
        "socket": ["proc2.do_this", "proc1.do_something", "proc3.do_something"],
        "plug": ["plug1", "plug2"],
    }
    before = dump(database)
    # When it is applied again
    with statements(database) as seen:
        second = apply_file(database, DECORATED)
    # Then every row is identical, ids and timestamps included, and nothing was written
    assert dump(database) == before
    assert not second.changed
    assert writes(seen) == []
    # And the recorded signature and the queue fields are the declared ones
    with database.transaction() as session:
        task = session.scalars(select(models.Task).where(models.Task.name == "do_this")).one()
        assert [(a.name, a.required) for a in task.arguments] == [("message", True)]
        assert task.inspected is not None
        queue = session.scalars(select(models.Queue).where(models.Queue.name == "queue1")).one()
        assert (queue.message_ttl, queue.expires) == (300000, 200)


def test_changed_field_is_the_only_write(database: Database) -> None:
    # Given the reference network applied
    apply_file(database, DECORATED)
    before = dump(database)
    # When one field of one processor changes
    network = load_network(DECORATED)
    network.processors["proc1"].fields["concurrency"] = 3
    with statements(database) as seen, database.transaction() as session:
        report = apply(session, network)
    # Then that row alone changed, in that field (and its timestamp)
    assert report.updated == {"processor": ["proc1"]}
    network_tables = {model.__tablename__ for model in TABLES}
    assert [w for w in writes(seen) if w.split()[1] in network_tables] == ["UPDATE processors"]
    after = dump(database)
    assert {k: v for k, v in after.items() if k != "processors"} == {
        k: v for k, v in before.items() if k != "processors"
    }
    changed = [
        (old["name"], key)
        for old, new in zip(before["processors"], after["processors"], strict=True)
        for key in old
        if old[key] != new[key]
    ]
    assert changed == [("proc1", "concurrency"), ("proc1", "updated")]


def test_plug_cycle_in_module_is_refused_and_nothing_written(
    database: Database, tmp_path: Path
) -> None:
    # Given a module whose two plugs feed each other's sockets
    path = write_module(
        tmp_path,
        """
        @processor(name="pa", gitrepo="https://example.org/a.git", module="m")
        class A(ProcessorBase):
            @plug(name="a_to_b", target="b.run", queue="q")
            @socket(name="a.run", queue="q")
            def run(message):
                return message

        @processor(name="pb", gitrepo="https://example.org/b.git", module="m")
        class B(ProcessorBase):
            @plug(name="b_to_a", target="a.run", queue="q")
            @socket(name="b.run", queue="q")
            def run(message):
                return message
        """,
    )
    # When it is applied
    with pytest.raises(InvalidNetwork, match=r"cycle|loop"):
        apply_file(database, path)
    # Then nothing of it was written
    assert all(count_rows(database, model) == 0 for model in TABLES)


def test_plug_cycle_marked_loop_is_accepted(database: Database, tmp_path: Path) -> None:
    # Given the same cycle with its closing plug marked as a loop
    path = write_module(
        tmp_path,
        """
        @processor(name="pa", gitrepo="https://example.org/a.git", module="m")
        class A(ProcessorBase):
            @plug(name="a_to_b", target="b.run", queue="q")
            @socket(name="a.run", queue="q")
            def run(message):
                return message

        @processor(name="pb", gitrepo="https://example.org/b.git", module="m")
        class B(ProcessorBase):
            @plug(name="b_to_a", target="a.run", queue="q", loop=True)
            @socket(name="b.run", queue="q")
            def run(message):
                return message
        """,
    )
    # When it is applied, then both plugs exist
    report = apply_file(database, path)
    assert report.created["plug"] == ["a_to_b", "b_to_a"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            """
            @plug(name="p", target="x", queue="q")
            def lonely(message):
                return message
            """,
            r"net\.py:3: @plug 'p' on 'lonely' needs a @socket below it",
        ),
        (
            """
            class NotAProcessor(ProcessorBase):
                @socket(name="s", processor="proc", queue="q")
                def run(message):
                    return message
            """,
            r"socket 's' is declared in class NotAProcessor, which has no @processor",
        ),
        ("x = 1 +\n", r"net\.py:2: SyntaxError: invalid syntax"),
        ("import no_such_module_here\n", r"net\.py:2: ModuleNotFoundError: No module named"),
        (
            """
            @processor(name="p", gitrepo="g", module="m", concurency=2)
            class P(ProcessorBase):
                pass
            """,
            r"net\.py:3: processor 'p': unknown field 'concurency'",
        ),
    ],
)
def test_module_errors_are_one_line_naming_the_file(
    tmp_path: Path, body: str, expected: str
) -> None:
    # When a module with a mistake is loaded
    path = write_module(tmp_path, body)
    with pytest.raises(NetworkFileError) as raised:
        load_network(path)
    # Then one line names the file (and the line where known) and the cause
    message = raised.value.message
    assert "\n" not in message
    assert message.startswith(f"cannot load {path}")
    assert re.search(expected, message), message


def test_module_level_socket_needs_a_processor(database: Database, tmp_path: Path) -> None:
    # Given a module-level socket that names no processor
    path = write_module(
        tmp_path,
        """
        @socket(name="s", queue="q", task="f")
        def f(message):
            return message
        """,
    )
    # When it is applied, then the error says what is missing and nothing is written
    with pytest.raises(InvalidValue, match="socket 's' does not exist yet, so it needs: processor"):
        apply_file(database, path)
    assert count_rows(database, models.Queue) == 0


def test_network_refuses_conflicting_declarations() -> None:
    # Given a queue declared by two sockets with different TTLs
    network = Network.of([QueueDecl("q", {"message_ttl": 5})])
    # Then a second, different value is refused, and a same-valued one merges
    with pytest.raises(
        InvalidValue, match="queue 'q' is declared twice with different message_ttl"
    ):
        network.add(QueueDecl("q", {"message_ttl": 6}))
    network.add(QueueDecl("q", {"message_ttl": 5, "durable": False}))
    assert network.queues["q"].fields == {"message_ttl": 5, "durable": False}
    # And a socket declared twice differently is refused
    network.add(SocketDecl("s", processor="p", task="f", queue="q"))
    with pytest.raises(InvalidValue, match="socket 's' is declared twice"):
        network.add(SocketDecl("s", processor="p", task="g", queue="q"))


def test_schedule_switch_and_argument_unbinding(database: Database) -> None:
    # Given the reference network, plug1 bound to an argument, proc1's socket on a cron
    apply_file(database, DECORATED)
    network = load_network(DECORATED)
    network.sockets["proc1.do_something"].fields = {"cron": "*/5 * * * *"}
    network.plugs["plug1"].argument = "message"
    with database.transaction() as session:
        apply(session, network)
    # When the original declaration is applied again
    with database.transaction() as session:
        report = apply(session, load_network(DECORATED))
    # Then the socket is back on its interval (cron dropped) and the plug unbound
    assert report.updated == {"socket": ["proc1.do_something"], "plug": ["plug1"]}
    with database.transaction() as session:
        socket = session.scalars(
            select(models.Socket).where(models.Socket.name == "proc1.do_something")
        ).one()
        assert (socket.interval, socket.cron) == (15, None)
        plug = session.scalars(select(models.Plug).where(models.Plug.name == "plug1")).one()
        assert plug.argument is None


def test_masked_gitrepo_is_refused_unless_it_masks_the_stored_one(database: Database) -> None:
    # Given a processor whose repository URL carries a password
    secret = "https://user:key@example.org/repo.git"
    masked = "https://user:***@example.org/repo.git"
    # When a masked URL is applied for a new processor, it is refused
    network = Network.of([])
    network.add(network_processor("p", masked))
    refused = pytest.raises(InvalidValue, match="masked credentials; supply the real credentials")
    with refused, database.transaction() as session:
        apply(session, network)
    # And when it masks the stored URL, the stored credentials are kept
    with database.transaction() as session:
        apply(session, Network.of([network_processor("p", secret)]))
    with database.transaction() as session:
        assert not apply(session, Network.of([network_processor("p", masked)])).changed
        stored = session.scalars(select(models.Processor)).one()
        assert stored.gitrepo == secret


def network_processor(name: str, gitrepo: str) -> Any:
    from pyfi.network.declare import ProcessorDecl

    return ProcessorDecl(name, {"gitrepo": gitrepo, "module": "m"})


def test_collecting_is_private_to_its_block() -> None:
    # When declarations are made inside a collecting block
    from pyfi.client.decorators import plug, socket

    with collecting() as network:

        @plug(name="p", target="t", queue="q2")
        @socket(name="s", processor="proc", queue="q1")
        def f(message: Any) -> Any:
            return message

    # Then they are in its network, the function is unchanged, and none escaped
    assert list(network.sockets) == ["s"]
    assert network.plugs["p"] == PlugDecl(
        "p", source="s", target="t", queue="q2", type="RESULT", loop=False
    )
    assert f("x") == "x"


def _script_env(database: Database) -> dict[str, str]:
    # The reference script runs on the default connection, configured as the
    # CLI is: here by PYFI_DB.
    return {**os.environ, "PYFI_DB": database.url, "GIT_REPO": GIT_REPO}


@pytest.mark.slow
def test_decorated_script_creates_the_network_once(database: Database) -> None:
    # When the reference module is run as a script
    env = _script_env(database)
    run = [sys.executable, str(DECORATED)]
    done = subprocess.run(run, capture_output=True, text=True, env=env, timeout=120, check=False)
    # Then it prints its message and the network exists
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Network created."
    assert done.stderr == ""
    first = dump(database)
    assert [p["name"] for p in first["plugs"]] != []
    assert sorted(s["name"] for s in first["sockets"]) == [
        "proc1.do_something",
        "proc2.do_this",
        "proc3.do_something",
    ]
    # And running it again changes nothing at all
    again = subprocess.run(run, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert again.returncode == 0, again.stderr
    assert dump(database) == first


def test_script_mode_applies_each_declaration_at_once(
    database: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a script with a processor class, then module-level sockets and a
    # plug whose target is declared only below it
    import runpy

    from pyfi.client import connection
    from pyfi.errors import ObjectNotFound

    path = write_module(
        tmp_path,
        """
        @processor(name="p", gitrepo="https://example.org/p.git", module="m")
        class P(ProcessorBase):
            pass

        @socket(name="s1", processor="p", queue={"name": "q", "message_ttl": 50})
        def first(message):
            return message

        @plug(name="too_early", target="s2", queue="q")
        @socket(name="s0", processor="p", queue="q")
        def zeroth(message):
            return message
        """,
    )
    connection.connect(database_url=database.url)
    try:
        # When it is run as a script, on the default connection
        with pytest.raises(ObjectNotFound, match=r"too_early.*no target socket named 's2'"):
            runpy.run_path(str(path), run_name="__main__")
    finally:
        connection.disconnect()
    # Then what was declared above the failing plug was applied, each in its own transaction
    rows = dump(database)
    assert [p["name"] for p in rows["processors"]] == ["p"]
    assert sorted(s["name"] for s in rows["sockets"]) == ["s0", "s1"]
    assert [(q["name"], q["message_ttl"]) for q in rows["queues"]] == [("q", 50)]
    assert rows["plugs"] == []
