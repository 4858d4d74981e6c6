"""`flow db ...`: initialise, migrate, dump, drop and rebuild the meta-model database."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import inspect

from pyfi.db import models, schema
from pyfi.db.session import Database
from tests.conftest import Flow, count_rows

MODEL_TABLES = set(models.Base.metadata.tables)
SECRET = "s3cretpassword"


def table_names(database: Database) -> set[str]:
    """Every table the database holds, pyfi's or not."""
    with database.connect() as conn:
        return set(inspect(conn).get_table_names())


@pytest.fixture
def new_flow(empty_database: Database, monkeypatch: pytest.MonkeyPatch) -> Flow:
    """`flow` bound to a database that was never initialised."""
    return Flow(empty_database.url, monkeypatch)


# --- init ----------------------------------------------------------------------------------


def test_db_init_creates_tables_and_reports_revision(
    new_flow: Flow, empty_database: Database
) -> None:
    # Given a database with no tables
    # When `flow db init` runs
    output = new_flow("db", "init").output
    # Then every table exists at the newest revision, and the output says so
    head = schema.head_revision()
    assert table_names(empty_database) == MODEL_TABLES | {schema.VERSION_TABLE}
    assert schema.current_revision(empty_database) == head
    assert f"{len(MODEL_TABLES)} tables at revision {head}" in output
    # and the new database is usable straight away
    new_flow("add", "queue", "-n", "q1")
    assert count_rows(empty_database, models.Queue) == 1


def test_db_init_twice_says_already_initialised(new_flow: Flow, empty_database: Database) -> None:
    # Given an initialised database holding a queue
    new_flow("db", "init")
    new_flow("add", "queue", "-n", "q1")
    tables = table_names(empty_database)
    # When `flow db init` runs again
    result = new_flow("db", "init")
    # Then it succeeds, says so, and changes nothing
    assert result.exit_code == 0
    assert "already initialised" in result.output
    assert schema.head_revision() in result.output
    assert table_names(empty_database) == tables
    assert count_rows(empty_database, models.Queue) == 1


def test_db_init_refuses_tables_without_history(new_flow: Flow, empty_database: Database) -> None:
    # Given pyfi tables created without the migrations (no alembic history)
    with empty_database.engine.begin() as conn:
        models.Base.metadata.create_all(conn)
    # When `flow db init` runs
    error = new_flow.fails("db", "init", code=2)
    # Then it refuses, pointing at `flow db rebuild`, and leaves the database alone
    assert "no migration history" in error
    assert "flow db rebuild" in error
    assert schema.current_revision(empty_database) is None


def test_db_init_after_downgrade_to_base_initialises(flow: Flow, database: Database) -> None:
    # Given a database migrated down to base (only alembic's empty version table remains)
    schema.downgrade(database, "base")
    assert not MODEL_TABLES & table_names(database)
    # When `flow db init` runs
    result = flow("db", "init", ok=False)
    # Then it creates the tables again
    assert result.exit_code == 0, result.output
    assert schema.current_revision(database) == schema.head_revision()


# --- migrate and check ---------------------------------------------------------------------


def test_db_migrate_on_migrated_database_says_already_at_revision(flow: Flow) -> None:
    # Given a migrated database
    # When `flow db migrate` runs
    result = flow("db", "migrate")
    # Then it says there is nothing to do
    assert result.exit_code == 0
    assert f"already at revision {schema.head_revision()}" in result.output


def test_db_migrate_on_empty_database_migrates_from_empty(
    new_flow: Flow, empty_database: Database
) -> None:
    # Given a database with no tables
    # When `flow db migrate` runs
    output = new_flow("db", "migrate").output
    # Then it migrated from nothing to head
    assert f"from empty to {schema.head_revision()}" in output
    assert schema.current_revision(empty_database) == schema.head_revision()


def test_db_drop_answered_no_aborts_and_keeps_tables(flow: Flow, database: Database) -> None:
    # Given a migrated database holding a queue
    flow("add", "queue", "-n", "q1")
    # When `flow db drop` is run without --yes and the question is answered "n"
    result = flow("db", "drop", input="n\n", ok=False)
    # Then it asked, aborted with a non-zero exit, and dropped nothing
    assert "Drop every pyfi table" in result.output
    assert result.exit_code != 0
    assert "Aborted" in result.output
    assert table_names(database) >= MODEL_TABLES
    assert count_rows(database, models.Queue) == 1


def test_db_drop_answered_yes_drops(flow: Flow, database: Database) -> None:
    # Given a migrated database
    # When `flow db drop` is answered "y"
    result = flow("db", "drop", input="y\n")
    # Then every pyfi table is gone
    assert "Dropped" in result.output
    assert not table_names(database) & (MODEL_TABLES | {schema.VERSION_TABLE})


def test_db_drop_yes_removes_every_pyfi_table(first_flow: Flow, database: Database) -> None:
    # Given a migrated database holding the first flow
    # When `flow db drop --yes` runs
    result = first_flow("db", "drop", "--yes")
    # Then it reports every table, and no pyfi table (nor the version table) is left
    assert f"Dropped {len(MODEL_TABLES) + 1} tables" in result.output
    assert table_names(database) == set()
    assert schema.current_revision(database) is None


def test_db_drop_yes_leaves_other_tables_alone(flow: Flow, database: Database) -> None:
    # Given a migrated database that also holds a table pyfi does not own
    with database.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE not_pyfi (x INTEGER)")
    # When `flow db drop --yes` runs
    flow("db", "drop", "--yes")
    # Then only that table remains
    assert table_names(database) == {"not_pyfi"}


def test_db_rebuild_yes_leaves_empty_migrated_database(
    first_flow: Flow, database: Database
) -> None:
    # Given a migrated database holding the first flow
    assert count_rows(database, models.Queue) == 1
    # When `flow db rebuild --yes` runs
    result = first_flow("db", "rebuild", "--yes")
    # Then the database is at head, matches the models, and holds nothing
    assert f"at revision {schema.head_revision()}" in result.output
    assert schema.current_revision(database) == schema.head_revision()
    assert schema.differences(database) == []
    for model in (models.Queue, models.Processor, models.Socket, models.Plug, models.Task):
        assert count_rows(database, model) == 0, model


def test_db_rebuild_answered_no_keeps_data(flow: Flow, database: Database) -> None:
    # Given a migrated database holding a queue
    flow("add", "queue", "-n", "q1")
    # When `flow db rebuild` is answered "n"
    result = flow("db", "rebuild", input="n\n", ok=False)
    # Then it aborted and the queue is still there
    assert result.exit_code != 0
    assert count_rows(database, models.Queue) == 1


# --- json ----------------------------------------------------------------------------------


def test_db_json_has_a_key_per_table_with_the_first_flow(first_flow: Flow) -> None:
    # Given the first-flow network
    # When the database is dumped as JSON
    dump = json.loads(first_flow("db", "json").output)
    # Then there is one key per table, each a list of rows, holding the first-flow objects
    assert set(dump) == MODEL_TABLES
    assert all(isinstance(rows, list) for rows in dump.values())
    assert [q["name"] for q in dump["queues"]] == ["pyfi.queue1"]
    assert [p["name"] for p in dump["processors"]] == ["proc1"]
    assert dump["processors"][0]["concurrency"] == 5
    assert sorted(s["name"] for s in dump["sockets"]) == [
        "pyfi.processors.sample.do_something",
        "pyfi.processors.sample.do_this",
    ]
    assert sorted(t["name"] for t in dump["tasks"]) == ["do_something", "do_this"]
    [plug] = dump["plugs"]
    sockets = {s["id"]: s["name"] for s in dump["sockets"]}
    assert plug["name"] == "plug1"
    assert sockets[plug["source_id"]] == "pyfi.processors.sample.do_something"
    assert sockets[plug["target_id"]] == "pyfi.processors.sample.do_this"
    assert dump["calls"] == []


def test_db_json_never_shows_passwords(first_flow: Flow) -> None:
    # Given a user added with a password
    first_flow("add", "user", "-n", "joe", "-e", "joe@x.org", input=f"{SECRET}\n{SECRET}\n")
    # When the database is dumped as JSON
    output = first_flow("db", "json").output
    # Then the user is there, but neither the hash nor the password is
    [user] = json.loads(output)["users"]
    assert (user["name"], user["email"]) == ("joe", "joe@x.org")
    assert "password_hash" not in output
    assert "$argon2" not in output
    assert SECRET not in output


def test_db_json_on_empty_tables_lists_nothing(flow: Flow) -> None:
    # Given a migrated database with no objects
    # When it is dumped
    dump = json.loads(flow("db", "json").output)
    # Then every table is present and empty
    assert dump == {name: [] for name in MODEL_TABLES}


# --- never-initialised database ------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ("ls", "queues"),
        ("ls", "processor", "-n", "proc1"),
        ("add", "queue", "-n", "q1"),
        ("update", "queue", "-n", "q1", "-t", "topic"),
        ("delete", "queue", "-n", "q1"),
        ("db", "json"),
        ("db", "check"),
    ],
    ids=" ".join,
)
def test_uninitialised_database_commands_say_run_db_init(
    new_flow: Flow, empty_database: Database, command: tuple[str, ...]
) -> None:
    # Given a database that was never initialised
    # When a command that needs the tables runs
    error = new_flow.fails(*command, code=2)
    # Then it exits 2 with one line telling to run `flow db init`, and creates nothing
    assert "flow db init" in error
    assert "no pyfi tables" in error
    assert not table_names(empty_database) & MODEL_TABLES
