"""The object API: the reference's Objects example, idempotence, and one-line errors."""

from __future__ import annotations

import json
import runpy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from pyfi import objects
from pyfi.client import connection
from pyfi.client.objects import AlchemyEncoder, Plug, Processor, upsert_socket
from pyfi.db import models
from pyfi.db.session import Database
from pyfi.errors import InvalidValue, ProcessorNotFound, UserError
from tests.networks.rows import dump

OBJECTS_EXAMPLE = Path(__file__).resolve().parents[1] / "networks" / "objects_example.py"
SECRET_REPO = "https://user:key@github.com/radiantone/pyfi-processors#egg=pyfi-processor"


@pytest.fixture
def default_connection(database: Database) -> Iterator[Database]:
    """The default connection of the Python API, on the test database."""
    connection.connect(database_url=database.url)
    yield connection.database()
    connection.disconnect()


def run_example(capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, Any], str]:
    names = runpy.run_path(str(OBJECTS_EXAMPLE))
    return names, capsys.readouterr().out


def test_objects_example_creates_the_network(
    default_connection: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    # When the reference's Objects example runs
    names, out = run_example(capsys)
    # Then it printed the user and the first socket as JSON
    assert out.startswith(f"USER {default_connection.current_user()}\n")
    printed = json.loads(out.split("\n", 1)[1])
    assert printed["name"] == "pyfi.processors.sample.do_something"
    assert (printed["processor"], printed["queue"], printed["interval"]) == (
        "proc1",
        "pyfi.queue1",
        5,
    )
    # And the rows are the ones it declared (the last Socket for a name wins)
    rows = dump(default_connection)
    assert sorted(p["name"] for p in rows["processors"]) == ["proc1", "proc2", "proc3"]
    with default_connection.transaction() as session:
        sockets = {s.name: s for s in session.scalars(select(models.Socket))}
        placed = {n: (s.processor.name, s.queue.name) for n, s in sockets.items()}
        assert placed == {
            "pyfi.processors.sample.do_something": ("proc1", "pyfi.queue1"),
            "pyfi.processors.sample.do_this": ("proc3", "pyfi.queue3"),
            "proc2.do_something": ("proc2", "pyfi.queue1"),
        }
        plug = session.scalars(select(models.Plug)).one()
        route = (plug.source.name, plug.target.name, plug.queue.name)
        assert route == (
            "pyfi.processors.sample.do_something",
            "pyfi.processors.sample.do_this",
            "pyfi.queue3",
        )
        proc1 = session.scalars(select(models.Processor).where(models.Processor.name == "proc1"))
        assert proc1.one().gitrepo == SECRET_REPO
    # And the objects expose their name, id and a snapshot without the password
    processor = names["processor"]
    assert (processor.name, processor.id) == ("proc1", processor.processor["id"])
    assert processor.processor["gitrepo"] == SECRET_REPO.replace(":key@", ":***@")
    assert processor.processor["beat"] is True
    assert names["plug"].plug["target"] == "pyfi.processors.sample.do_this"


def test_objects_example_run_twice_updates_nothing_new(
    default_connection: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the example run once
    run_example(capsys)
    before = dump(default_connection)
    # When it runs again
    names, _out = run_example(capsys)
    # Then processors, plug and the sockets declared once are untouched; the
    # socket the example declares twice (on proc2, then proc3) moves and moves
    # back, so only its `updated` differs
    assert [names[n].action for n in ("processor", "processor2", "processor3", "plug")] == [
        "unchanged"
    ] * 4
    after = dump(default_connection)
    assert {k: v for k, v in after.items() if k != "sockets"} == {
        k: v for k, v in before.items() if k != "sockets"
    }
    for old, new in zip(before["sockets"], after["sockets"], strict=True):
        differing = {k for k in old if old[k] != new[k]}
        assert differing == (
            {"updated"} if old["name"] == "pyfi.processors.sample.do_this" else set()
        )


def test_objects_write_only_what_differs(default_connection: Database) -> None:
    # Given a processor and a socket
    first = Processor(name="p", module="m", gitrepo="https://example.org/r.git", concurrency=2)
    socket = upsert_socket("s", processor=first, queue={"name": "q", "message_ttl": 10}, task="f")
    assert (first.action, socket["action"]) == ("created", "created")
    # When they are declared again, once unchanged and once with a new value
    same = Processor(name="p", module="m", gitrepo="https://example.org/r.git", concurrency=2)
    changed = Processor(name="p", concurrency=3)
    # Then the first writes nothing and the second only the new value
    assert (same.action, same.processor["updated"]) == ("unchanged", first.processor["updated"])
    assert changed.action == "updated"
    assert changed.processor["concurrency"] == 3
    assert changed.processor["module"] == "m"
    assert upsert_socket("s", processor="p", queue="q", task="f")["action"] == "unchanged"


def test_user_is_recorded_when_such_a_pyfi_user_exists(default_connection: Database) -> None:
    # Given a pyfi user named after the database login
    from pyfi.client.user import USER

    assert default_connection.current_user() == USER
    with default_connection.transaction() as session:
        kind = objects.KINDS["user"]
        objects.create(
            session, kind, {"name": USER, "email": "u@example.org", "password": "password123"}
        )
        user_id = objects.get_by_name(session, models.User, USER).id
    # When processors name that user and an unknown one
    known = Processor(name="p1", module="m", gitrepo="g", user=USER)
    unknown = Processor(name="p2", module="m", gitrepo="g", user="nobody")
    # Then the first records the user, the second none (both record their owner)
    assert known.processor["user_id"] == user_id
    assert unknown.processor["user_id"] is None
    assert unknown.processor["owner"] == USER


@pytest.mark.parametrize(
    ("make", "error", "expected"),
    [
        (
            lambda: upsert_socket("s2", processor="nope", queue="q", task="f"),
            ProcessorNotFound,
            "no processor named 'nope'",
        ),
        (
            lambda: Processor(name="bare", concurrency=2),
            InvalidValue,
            "processor 'bare' does not exist yet, so it needs: module, gitrepo",
        ),
        (
            lambda: Processor(name="p9", module="m", gitrepo="g", concurrency=0),
            InvalidValue,
            "concurrency must be at least 1",
        ),
        (
            lambda: Plug(name="plug9", processor="p2", source="s1", target="s2", queue="q9"),
            InvalidValue,
            "plug 'plug9': processor 'p2' is not the processor of its source socket 's1'",
        ),
        (
            lambda: upsert_socket("s1", queue={"message_ttl": 5}),
            InvalidValue,
            "a queue dict needs a 'name'",
        ),
    ],
)
def test_errors_are_one_line_and_write_nothing(
    default_connection: Database, make: Any, error: type[UserError], expected: str
) -> None:
    # Given two processors with a socket each
    Processor(name="p1", module="m", gitrepo="g")
    Processor(name="p2", module="m", gitrepo="g")
    upsert_socket("s1", processor="p1", queue="q", task="f")
    upsert_socket("s2", processor="p2", queue="q", task="f")
    before = dump(default_connection)
    # When a wrong object is declared
    with pytest.raises(error) as raised:
        make()
    # Then one line says what is wrong, and nothing was written
    assert isinstance(raised.value, UserError)
    assert expected in raised.value.message
    assert "\n" not in raised.value.message
    assert dump(default_connection) == before


def test_alchemy_encoder_writes_snapshots_and_rows(default_connection: Database) -> None:
    # Given a processor snapshot (datetimes, UUIDs, enums)
    processor = Processor(name="p", module="m", gitrepo="g")
    # When it is dumped with the encoder, then every value is JSON
    decoded = json.loads(json.dumps(processor.processor, cls=AlchemyEncoder))
    assert decoded["id"] == str(processor.id)
    assert decoded["status"] == "ready"
    assert decoded["created"] == processor.processor["created"].isoformat()


def test_default_connection_reads_pyfi_db(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given PYFI_DB naming a database
    monkeypatch.setenv("PYFI_DB", sqlite_url)
    connection.disconnect()
    try:
        # When a script uses the default connection, then it is that database
        assert connection.database().url == sqlite_url
    finally:
        connection.disconnect()
