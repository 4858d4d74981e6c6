"""The alembic migrations against real databases: they build exactly the models' schema."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import CheckConstraint, delete, inspect, text

from pyfi.db import models, schema
from pyfi.db.enums import CallState
from pyfi.db.session import Database
from pyfi.errors import ConfigurationError
from tests.conftest import Flow, count_rows
from tests.integration.test_models import add_call, build_network

MODEL_TABLES = set(models.Base.metadata.tables)
# The revision before calls.socket_id stopped being a foreign key.
LAST_WITH_SOCKET_FOREIGN_KEY = "4be080f6a066"


def table_names(database: Database) -> set[str]:
    """Every table the database holds, pyfi's or not."""
    with database.connect() as conn:
        return set(inspect(conn).get_table_names())


def indexed_columns(database: Database, table: str) -> dict[tuple[str, ...], bool]:
    """Column tuples that have an index or a unique constraint, mapped to uniqueness."""
    with database.connect() as conn:
        inspector = inspect(conn)
        found = {
            tuple(index["column_names"]): bool(index["unique"])
            for index in inspector.get_indexes(table)
        }
        for constraint in inspector.get_unique_constraints(table):
            found[tuple(constraint["column_names"])] = True
    return found


def test_upgrade_empty_database_reaches_head(empty_database: Database) -> None:
    # Given a database with no tables
    assert table_names(empty_database) == set()
    assert schema.current_revision(empty_database) is None
    # When it is migrated to head
    before, after = schema.upgrade(empty_database)
    # Then it is at the newest shipped revision, with every model's table
    assert before is None
    assert after == schema.head_revision()
    assert schema.current_revision(empty_database) == schema.head_revision()
    assert table_names(empty_database) == MODEL_TABLES | {schema.VERSION_TABLE}


def test_upgrade_matches_the_models_exactly(database: Database) -> None:
    # Given a database migrated to head
    # When autogenerate compares it with the models
    found = schema.differences(database)
    # Then there is nothing it would change
    assert found == []


def test_differences_detects_a_missing_index(database: Database) -> None:
    # Given a migrated database from which an index was dropped by hand
    with database.engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_events_call_id")
    # When it is compared with the models
    found = schema.differences(database)
    # Then the comparison reports the missing index
    assert [(kind, index.name) for kind, index, *_ in found] == [("add_index", "ix_events_call_id")]


def test_upgrade_twice_changes_nothing(database: Database) -> None:
    # Given a migrated database holding a queue
    with database.transaction() as session:
        session.add(models.Queue(name="q1"))
    # When it is migrated to head again
    before, after = schema.upgrade(database)
    # Then the revision is the same and the data is untouched
    assert before == after == schema.head_revision()
    assert count_rows(database, models.Queue) == 1


def test_upgrade_unknown_revision_is_refused(empty_database: Database) -> None:
    # Given an empty database
    # When it is migrated to a revision that does not exist
    with pytest.raises(ConfigurationError, match="cannot migrate to 'nosuchrev'"):
        schema.upgrade(empty_database, "nosuchrev")
    # Then nothing was created
    assert not MODEL_TABLES & table_names(empty_database)


def test_downgrade_to_base_removes_every_pyfi_table(database: Database) -> None:
    # Given a migrated database
    assert table_names(database) >= MODEL_TABLES
    # When it is migrated down to base
    schema.downgrade(database, "base")
    # Then no model table is left and no revision is recorded
    assert not MODEL_TABLES & table_names(database)
    assert schema.current_revision(database) is None


def test_downgrade_then_upgrade_round_trips(database: Database) -> None:
    # Given a migrated database, migrated down to base
    schema.downgrade(database, "base")
    # When it is migrated up again
    before, after = schema.upgrade(database)
    # Then it is back at head with the models' exact schema, and usable
    assert (before, after) == (None, schema.head_revision())
    assert table_names(database) >= MODEL_TABLES
    assert schema.differences(database) == []
    with database.transaction() as session:
        session.add(models.Queue(name="q1"))
    assert count_rows(database, models.Queue) == 1


@pytest.mark.parametrize(
    ("table", "columns", "unique"),
    [
        pytest.param("sockets", ("name",), True, id="sockets-by-name"),
        pytest.param("calls", ("tracking_id",), False, id="calls-by-tracking-id"),
        pytest.param("events", ("call_id",), False, id="events-by-call-id"),
        pytest.param("calls", ("created",), False, id="calls-by-time"),
        pytest.param("plugs", ("source_id",), False, id="plugs-by-source"),
        pytest.param("plugs", ("target_id",), False, id="plugs-by-target"),
        pytest.param("processors", ("name",), True, id="processors-by-name"),
        pytest.param("queues", ("name",), True, id="queues-by-name"),
    ],
)
def test_migration_creates_lookup_indexes(
    database: Database, table: str, columns: tuple[str, ...], unique: bool
) -> None:
    # Given a migrated database
    # When the indexes and unique constraints of the table are inspected
    found = indexed_columns(database, table)
    # Then the lookup columns are indexed (and unique where names must be)
    assert columns in found, found
    assert found[columns] is unique


def test_migration_creates_named_constraints(database: Database) -> None:
    # Given a migrated database
    with database.connect() as conn:
        inspector = inspect(conn)
        uniques = {c["name"] for c in inspector.get_unique_constraints("sockets")}
        foreign: dict[Any, Any] = {
            fk["name"]: fk["options"].get("ondelete") for fk in inspector.get_foreign_keys("events")
        }
        checks = {c["name"] for c in inspector.get_check_constraints("processors")}
    # Then constraints carry the naming convention's names, which later migrations rely on
    assert "uq_sockets_name" in uniques
    assert foreign == {"fk_events_call_id_calls": "CASCADE"}
    assert {"ck_processors_concurrency_positive", "ck_processors_processor_status"} <= checks


def test_migration_creates_every_check_constraint_of_the_models(database: Database) -> None:
    # Given the CHECK constraints the models declare (autogenerate does not compare these)
    declared = {
        (table.name, str(constraint.name))
        for table in models.Base.metadata.sorted_tables
        for constraint in table.constraints
        if isinstance(constraint, CheckConstraint)
    }
    assert ("queues", "ck_queues_queue_type") in declared
    # When the migrated database is inspected
    with database.connect() as conn:
        inspector = inspect(conn)
        present = {
            (table, str(check["name"]))
            for table in MODEL_TABLES
            for check in inspector.get_check_constraints(table)
        }
    # Then the migrations created each of them
    assert declared - present == set()


def test_migration_foreign_keys_have_the_models_on_delete_rules(database: Database) -> None:
    # Given the ON DELETE rule of every foreign key the models declare
    declared = {
        (table.name, tuple(fk.column_keys), fk.referred_table.name, (fk.ondelete or "").upper())
        for table in models.Base.metadata.sorted_tables
        for fk in table.foreign_key_constraints
    }
    # When the migrated database is inspected
    with database.connect() as conn:
        inspector = inspect(conn)
        present = {
            (
                table,
                tuple(fk["constrained_columns"]),
                fk["referred_table"],
                (fk["options"].get("ondelete") or "").upper(),
            )
            for table in MODEL_TABLES
            for fk in inspector.get_foreign_keys(table)
        }
    # Then the database holds exactly those rules
    assert present == declared
    assert ("sockets", ("queue_id",), "queues", "RESTRICT") in present


def test_db_check_passes_on_migrated_database(flow: Flow) -> None:
    # Given a migrated database
    # When `flow db check` runs
    result = flow("db", "check")
    # Then it exits 0 and says the schema matches
    assert result.exit_code == 0
    assert "matches" in result.output


def test_db_check_fails_on_drifted_database(flow: Flow, database: Database) -> None:
    # Given a migrated database missing an index
    with database.engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_calls_tracking_id")
    # When `flow db check` runs
    error = flow.fails("db", "check", code=2)
    # Then it fails, telling how many differences there are and how to fix them
    assert "differs from the models in 1 place" in error
    assert "flow db migrate" in error


def test_differences_ignore_tables_that_are_not_the_models(database: Database) -> None:
    # Given a table of another component (the result backend) in the same database
    with database.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE pyfi_results (call_id VARCHAR(64) PRIMARY KEY)")
    # When the schema is compared with the models
    found = schema.differences(database)
    # Then the foreign table is not reported as something to drop
    assert found == []


def index_definition(database: Database, name: str) -> str:
    """The SQL that defines index ``name``, as the database keeps it."""
    query = (
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :name"
        if database.is_sqlite
        else "SELECT indexdef FROM pg_indexes"
        " WHERE schemaname = current_schema() AND indexname = :name"
    )
    with database.connect() as conn:
        return str(conn.execute(text(query), {"name": name}).scalar_one())


def test_unfinished_calls_index_leaves_finished_calls_out(database: Database) -> None:
    # Given a migrated database
    # When the definition of the index of unfinished calls is read
    definition = index_definition(database, "ix_calls_unfinished").lower()
    # Then it is partial: only the states something may still happen to enter it
    where = definition.split(" where ", 1)[1]
    for state in CallState:
        assert (f"'{state.value}'" in where) is (not state.is_final), (state, where)


def test_calls_keep_a_deleted_sockets_id_and_a_downgrade_clears_it(database: Database) -> None:
    # Given a database at the revision before calls lost their socket foreign key,
    # with a call of a socket (written at head: the models have columns the
    # old revision lacks)
    net = build_network(database)
    call_id = add_call(database, net.source)
    schema.downgrade(database, LAST_WITH_SOCKET_FOREIGN_KEY)
    # When it is migrated to head and the socket is deleted
    schema.upgrade(database)
    with database.transaction() as session:
        session.execute(delete(models.Socket).where(models.Socket.id == net.source))
    # Then the call still names the socket it ran on
    with database.transaction() as session:
        assert session.get_one(models.Call, call_id).socket_id == net.source
    # When it is migrated back down
    schema.downgrade(database, LAST_WITH_SOCKET_FOREIGN_KEY)
    # Then the foreign key is back, and the gone socket's id cleared as SET NULL would have
    with database.connect() as conn:
        foreign = {
            fk["name"]: fk["options"].get("ondelete")
            for fk in inspect(conn).get_foreign_keys("calls")
        }
        socket_id = conn.execute(
            text("SELECT socket_id FROM calls WHERE name = 's.source'")
        ).scalar_one()
    assert foreign == {"fk_calls_socket_id_sockets": "SET NULL"}
    assert socket_id is None
    assert count_rows(database, models.Call) == 1
