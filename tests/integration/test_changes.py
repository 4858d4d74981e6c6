"""Change announcements: NOTIFY on PostgreSQL, the version row on SQLite.

Every change goes through real databases and, where a user would make it,
through the `flow` command line: what matters is that an agent's
:class:`ChangeListener` hears committed changes quickly, and only those.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import psycopg
import pytest
from sqlalchemy.orm import Session

from pyfi import objects
from pyfi.db import schema
from pyfi.db.changes import (
    CHANGED,
    CREATED,
    DELETED,
    EVERYTHING,
    RESYNC,
    UPDATED,
    Change,
    ChangeListener,
    announce,
    conninfo_from_url,
    origin,
)
from pyfi.db.session import Database
from tests.conftest import FIRST_FLOW, TEST_DB, Flow, requires_postgres

PROCESSOR = ("-g", "https://github.com/radiantone/pyfi-processors", "-m", "pyfi.processors.sample")


def _migrated(url: str) -> Iterator[Database]:
    database = Database(url)
    schema.upgrade(database)
    yield database
    database.dispose()


@pytest.fixture
def pg_database(postgres_url: str) -> Iterator[Database]:
    """A migrated PostgreSQL schema of its own."""
    yield from _migrated(postgres_url)


@pytest.fixture
def other_pg_database() -> Iterator[Database]:
    """A second migrated schema in the same PostgreSQL database (so: the same channel)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(conninfo_from_url(TEST_DB), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    separator = "&" if "?" in TEST_DB else "?"
    yield from _migrated(f"{TEST_DB}{separator}options={quote(f'-csearch_path={name}')}")
    with psycopg.connect(conninfo_from_url(TEST_DB), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{name}" CASCADE')


@pytest.fixture
def sqlite_database(sqlite_url: str) -> Iterator[Database]:
    """A migrated SQLite file."""
    yield from _migrated(sqlite_url)


def _collect(listener: ChangeListener, quiet_s: float = 0.3) -> list[tuple[str, str, str]]:
    """Everything heard until nothing more arrives for ``quiet_s``."""
    heard: list[tuple[str, str, str]] = []
    while changes := listener.wait(quiet_s):
        heard += [(c.kind, c.name, c.action) for c in changes]
    return heard


def _add_processor(session: Session, name: str) -> None:
    values = {"name": name, "gitrepo": PROCESSOR[1], "module": PROCESSOR[3]}
    objects.create(session, objects.KINDS["processor"], values)


def _change_then_abandon(database: Database, also_add: str | None = None) -> None:
    """Flush changes to processor ``p`` (announcing them), then roll the transaction back."""
    with database.transaction() as session:
        objects.update(session, objects.KINDS["processor"], "p", {"concurrency": 3})
        if also_add:
            _add_processor(session, also_add)
        raise RuntimeError("abandoned on purpose")


@pytest.mark.postgres
@requires_postgres
def test_listener_postgres_hears_cli_stop_within_half_a_second(
    pg_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a processor and an agent blocked in wait() on another thread
    flow = Flow(pg_database.url, monkeypatch)
    flow("add", "processor", "-n", "p", *PROCESSOR)
    heard: list[Change] = []
    seen_at: list[float] = []
    with ChangeListener(pg_database.url) as listener:

        def agent() -> None:
            heard.extend(listener.wait(5.0))
            seen_at.append(time.monotonic())

        thread = threading.Thread(target=agent)
        thread.start()
        time.sleep(0.05)

        # When a user stops the processor
        flow("update", "processor", "-n", "p", "-rs", "stopped")
        committed_at = time.monotonic()
        thread.join(5.0)

    # Then the agent woke up well within half a second, knowing what changed
    assert seen_at, "the listener never returned"
    assert seen_at[0] - committed_at < 0.5
    assert [(c.kind, c.name, c.action) for c in heard] == [("processor", "p", UPDATED)]
    assert abs(heard[0].at - time.time()) < 60
    assert heard[0].origin == origin()
    assert not heard[0].everything


@pytest.mark.postgres
@requires_postgres
def test_listener_postgres_hears_every_watched_kind_of_the_first_flow(
    pg_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a listener
    flow = Flow(pg_database.url, monkeypatch)
    with ChangeListener(pg_database.url) as listener:
        # When the reference's first flow is built and its processor deleted
        for command in FIRST_FLOW:
            flow(*command)
        built = _collect(listener)
        flow("delete", "processor", "-n", "proc1")
        deleted = _collect(listener)

    # Then every queue, processor, task, socket and plug was announced, once
    do_something, do_this = "pyfi.processors.sample.do_something", "pyfi.processors.sample.do_this"
    assert sorted(built) == sorted(
        [
            ("queue", "pyfi.queue1", CREATED),
            ("processor", "proc1", CREATED),
            ("task", "do_something", CREATED),
            ("socket", do_something, CREATED),
            ("task", "do_this", CREATED),
            ("socket", do_this, CREATED),
            ("plug", "plug1", CREATED),
        ]
    )
    # And the processor's deletion was announced with the sockets the ORM took along
    assert ("processor", "proc1", DELETED) in deleted
    assert ("socket", do_something, DELETED) in deleted


@pytest.mark.postgres
@requires_postgres
def test_listener_postgres_hears_nothing_of_rolled_back_transactions(
    pg_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a processor and a listener
    flow = Flow(pg_database.url, monkeypatch)
    flow("add", "processor", "-n", "p", *PROCESSOR)
    with ChangeListener(pg_database.url) as listener:
        _collect(listener)

        # When a CLI command fails (a duplicate name) and a transaction whose
        # changes were already flushed (so announced) is rolled back
        flow.fails("add", "processor", "-n", "p", *PROCESSOR)
        with pytest.raises(RuntimeError, match="abandoned"):
            _change_then_abandon(pg_database, also_add="ghost")
        heard_after_failures = _collect(listener)
        # And then a change is committed
        flow("update", "processor", "-n", "p", "-c", "2")
        heard_after_commit = _collect(listener)

    # Then only the committed change was heard
    assert heard_after_failures == []
    assert heard_after_commit == [("processor", "p", UPDATED)]


@pytest.mark.postgres
@requires_postgres
def test_announce_deduplicates_within_one_transaction(
    pg_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a processor and a listener
    Flow(pg_database.url, monkeypatch)("add", "processor", "-n", "p", *PROCESSOR)
    processor = objects.KINDS["processor"]
    with ChangeListener(pg_database.url) as listener:
        _collect(listener)

        # When one transaction changes p three times, creates q and changes it
        with pg_database.transaction() as session:
            for concurrency in (2, 3, 4):
                objects.update(session, processor, "p", {"concurrency": concurrency})
            _add_processor(session, "q")
            objects.update(session, processor, "q", {"concurrency": 2})
            announce(session, "processor", "p", UPDATED)
        heard = _collect(listener)

    # Then each object is announced once, a creation swallowing later updates
    assert sorted(heard) == [("processor", "p", UPDATED), ("processor", "q", CREATED)]


@pytest.mark.postgres
@requires_postgres
def test_announce_reports_a_rename_as_delete_and_create(
    pg_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a processor and a listener
    flow = Flow(pg_database.url, monkeypatch)
    flow("add", "processor", "-n", "p", *PROCESSOR)
    with ChangeListener(pg_database.url) as listener:
        _collect(listener)

        # When it is renamed
        flow("update", "processor", "-n", "p", "--new-name", "p2")
        heard = _collect(listener)

    # Then name-keyed observers see the old name go and the new one come
    assert sorted(heard) == [("processor", "p", DELETED), ("processor", "p2", CREATED)]


@pytest.mark.postgres
@requires_postgres
def test_announce_replaces_an_oversized_name_with_a_wildcard(pg_database: Database) -> None:
    # Given a listener
    with ChangeListener(pg_database.url) as listener:
        # When a name too long for a NOTIFY payload is announced
        with pg_database.transaction() as session:
            announce(session, "processor", "x" * 10_000, UPDATED)
        heard = _collect(listener)

    # Then the change still arrives, naming only its kind
    assert heard == [("processor", EVERYTHING, UPDATED)]


@pytest.mark.postgres
@requires_postgres
def test_listener_postgres_ignores_other_schemas(
    pg_database: Database, other_pg_database: Database
) -> None:
    # Given two installations in one database, each with a listener
    with ChangeListener(pg_database.url) as mine, ChangeListener(other_pg_database.url) as theirs:
        # When each installation changes a processor
        with pg_database.transaction() as session:
            _add_processor(session, "mine")
        with other_pg_database.transaction() as session:
            _add_processor(session, "theirs")
        heard_by_mine, heard_by_theirs = _collect(mine), _collect(theirs)

    # Then each listener hears only its own installation
    assert heard_by_mine == [("processor", "mine", CREATED)]
    assert heard_by_theirs == [("processor", "theirs", CREATED)]


@pytest.mark.postgres
@requires_postgres
def test_listener_postgres_reconnects_and_asks_for_resync(
    pg_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a listener whose connection the server then terminates
    flow = Flow(pg_database.url, monkeypatch)
    with ChangeListener(pg_database.url) as listener:
        killed = listener.backend_pid
        with psycopg.connect(conninfo_from_url(TEST_DB), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (killed,))

        # When it next waits
        started = time.monotonic()
        resync = listener.wait(5.0)
        elapsed = time.monotonic() - started
        # And a change is committed afterwards
        flow("add", "processor", "-n", "p", *PROCESSOR)
        heard = _collect(listener)
        pid = listener.backend_pid

    # Then it reconnected at once, told the caller to re-read, and hears again
    assert [(c.kind, c.name, c.action) for c in resync] == [(EVERYTHING, EVERYTHING, RESYNC)]
    assert resync[0].everything
    assert elapsed < 2.0
    assert pid is not None
    assert pid != killed
    assert heard == [("processor", "p", CREATED)]


def test_listener_sqlite_sees_committed_change_within_poll_interval(
    sqlite_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a processor and a listener polling every 0.2 s
    flow = Flow(sqlite_database.url, monkeypatch)
    flow("add", "processor", "-n", "p", *PROCESSOR)
    with ChangeListener(sqlite_database.url, poll_interval_s=0.2) as listener:
        # When a rolled-back transaction changes it
        with pytest.raises(RuntimeError, match="abandoned"):
            _change_then_abandon(sqlite_database)
        after_rollback = listener.wait(0.3)
        # And then a user stops it
        flow("update", "processor", "-n", "p", "-rs", "stopped")
        started = time.monotonic()
        after_commit = listener.wait(2.0)
        elapsed = time.monotonic() - started
        again = listener.wait(0.3)

    # Then only the commit is noticed, within one poll interval, as "re-read everything"
    assert after_rollback == []
    assert [(c.kind, c.action) for c in after_commit] == [(EVERYTHING, CHANGED)]
    assert after_commit[0].everything
    assert elapsed < 0.2 + 0.2
    assert again == []


def test_listener_ignore_own_drops_only_this_process_changes(database: Database) -> None:
    # Given a processor and a listener that ignores this process's own writes (each kind)
    with database.transaction() as session:
        _add_processor(session, "p")
    with ChangeListener(database.url, poll_interval_s=0.2, ignore_own=True) as listener:
        # When this process changes it
        with database.transaction() as session:
            objects.update(session, objects.KINDS["processor"], "p", {"concurrency": 2})
        own = listener.wait(0.5)
        # And another process (a real `flow`) changes it
        subprocess.run(
            [sys.executable, "-m", "pyfi.cli", "update", "processor", "-n", "p", "-c", "3"],
            env={**os.environ, "PYFI_DB": database.url},
            check=True,
            capture_output=True,
            timeout=60,
        )
        others = listener.wait(2.0)

    # Then only the other process's change is heard, naming that process
    assert own == []
    assert len(others) == 1
    assert others[0].origin
    assert others[0].origin != origin()


def test_listener_wait_returns_empty_promptly_on_timeout(database: Database) -> None:
    # Given a listener on a quiet database (each kind in turn)
    with ChangeListener(database.url, poll_interval_s=5.0) as listener:
        # When it waits a fifth of a second
        started = time.monotonic()
        heard = listener.wait(0.2)
        elapsed = time.monotonic() - started

    # Then it returns nothing, on time
    assert heard == []
    assert 0.19 <= elapsed < 0.5


def test_conninfo_from_url_drops_the_driver_and_keeps_options() -> None:
    # Given the URL form the tests and pyfi use for a schema of their own
    url = (
        "postgresql+psycopg://postgres:s%40cret@db.example:5433/test?options=-csearch_path%3Dt_abc"
    )

    # When it is turned into a libpq connection string
    conninfo = psycopg.conninfo.conninfo_to_dict(conninfo_from_url(url))

    # Then every part survives, decoded
    assert conninfo == {
        "host": "db.example",
        "port": "5433",
        "user": "postgres",
        "password": "s@cret",
        "dbname": "test",
        "options": "-csearch_path=t_abc",
    }
