"""The meta-model against real databases: types, stamps, ON DELETE rules and constraints.

Every test runs on SQLite and on PostgreSQL (the ``database`` fixture is
parametrized), and checks what the *database* does, not only what the ORM does:
deletes and inserts that must be refused are issued as SQL statements that
bypass the ORM's own bookkeeping.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import bindparam, delete, inspect, select, text, update
from sqlalchemy.exc import IntegrityError, StatementError

from pyfi import objects
from pyfi.db import models
from pyfi.db.enums import CallState, EventName, QueueType
from pyfi.db.serialize import to_dict
from pyfi.db.session import Database
from pyfi.db.types import UTCDateTime
from pyfi.passwords import hash_password, verify_password
from tests.conftest import count_rows


@dataclass(frozen=True)
class Network:
    """The ids of a small processor network built through the ORM."""

    queue: uuid.UUID
    processor: uuid.UUID
    task: uuid.UUID
    argument: uuid.UUID
    source: uuid.UUID
    target: uuid.UUID
    plug: uuid.UUID


def build_network(database: Database) -> Network:
    """A queue, a processor with two tasks, one argument, two sockets and a plug."""
    with database.transaction() as session:
        queue = models.Queue(name="q1")
        processor = models.Processor(name="proc1", module="pyfi.sample", gitrepo="https://x/y")
        first = models.Task(name="do_something", processor=processor)
        second = models.Task(name="do_this", processor=processor)
        argument = models.Argument(name="message", position=0, task=second)
        source = models.Socket(name="s.source", processor=processor, task=first, queue=queue)
        target = models.Socket(name="s.target", processor=processor, task=second, queue=queue)
        plug = models.Plug(
            name="plug1", source=source, target=target, queue=queue, argument=argument
        )
        session.add_all([queue, processor, first, second, argument, source, target, plug])
        session.flush()
        return Network(
            queue=queue.id,
            processor=processor.id,
            task=first.id,
            argument=argument.id,
            source=source.id,
            target=target.id,
            plug=plug.id,
        )


def add_call(database: Database, socket_id: uuid.UUID | None, events: int = 0) -> uuid.UUID:
    """A call of ``socket_id`` with ``events`` events; returns the call's id."""
    with database.transaction() as session:
        call = models.Call(name="s.source", socket_id=socket_id, tracking_id=uuid.uuid4())
        call.events = [models.Event(name=EventName.RECEIVED) for _ in range(events)]
        session.add(call)
        session.flush()
        return call.id


def typed_insert(table: str, values: dict[str, Any]) -> Any:
    """A raw ``INSERT`` whose ids and timestamps are bound as each database stores them."""
    columns = ", ".join(values)
    placeholders = ", ".join(f":{name}" for name in values)
    statement = text(f"INSERT INTO {table} ({columns}) VALUES ({placeholders})")
    types = {"id": models.Queue.__table__.c.id.type}
    types |= {name: UTCDateTime() for name in ("created", "updated")}
    return statement.bindparams(
        *(bindparam(name, type_=kind) for name, kind in types.items() if name in values)
    )


def raw_row(table: str, **values: Any) -> tuple[Any, dict[str, Any]]:
    """A statement and parameters inserting one row with a fresh id and timestamps."""
    now = datetime.now(UTC)
    params = {"id": uuid.uuid4(), "created": now, "updated": now, **values}
    return typed_insert(table, params), params


# --- identifiers ---------------------------------------------------------------------------


def test_id_is_python_uuid_known_after_flush(database: Database) -> None:
    # Given the id column's default
    column = models.Queue.__table__.c.id
    # Then it is generated in Python, not by the database
    assert column.default is not None
    assert column.default.is_callable
    assert column.server_default is None
    # When a queue is constructed and flushed
    with database.transaction() as session:
        queue = models.Queue(name="q1")
        session.add(queue)
        session.flush()
        flushed = queue.id
    # Then it has a version-4 UUID at once, and reads back as the same UUID object type
    assert isinstance(flushed, uuid.UUID)
    assert flushed.version == 4
    with database.transaction() as session:
        loaded = session.scalars(select(models.Queue.id)).one()
    assert type(loaded) is uuid.UUID
    assert loaded == flushed


def test_id_is_distinct_for_every_row(database: Database) -> None:
    # Given three queues created in one transaction
    with database.transaction() as session:
        queues = [models.Queue(name=f"q{i}") for i in range(3)]
        session.add_all(queues)
        session.flush()
        ids = {queue.id for queue in queues}
    # Then each got its own id
    assert len(ids) == 3


# --- timestamps ----------------------------------------------------------------------------


def test_timestamps_come_back_timezone_aware_utc(database: Database) -> None:
    # Given a call created with a start time in a non-UTC zone
    eastern = timezone(timedelta(hours=-5))
    started = datetime(2024, 3, 1, 7, 30, 15, 123456, tzinfo=eastern)
    with database.transaction() as session:
        session.add(models.Call(name="c", tracking_id=uuid.uuid4(), started=started))
    # When it is read back in a new transaction
    with database.transaction() as session:
        call = session.scalars(select(models.Call)).one()
        values = (call.created, call.updated, call.started)
    # Then every timestamp is aware and in UTC, and the instant is unchanged
    for value in values:
        assert value.tzinfo is not None
        assert value.utcoffset() == timedelta(0)
    assert call.started == started
    assert call.started.hour == 12
    assert abs(datetime.now(UTC) - call.created) < timedelta(minutes=5)


def test_timestamp_naive_datetime_is_refused(database: Database) -> None:
    # Given a call whose start time has no time zone
    naive = datetime(2024, 3, 1, 7, 30)
    # When it is flushed
    with pytest.raises(StatementError, match="naive datetime"), database.transaction() as session:
        session.add(models.Call(name="c", tracking_id=uuid.uuid4(), started=naive))
    # Then nothing was stored
    assert count_rows(database, models.Call) == 0


# --- audit columns -------------------------------------------------------------------------


def test_owner_is_stamped_with_the_database_user(database: Database) -> None:
    # Given the user the database connects as
    expected = database.current_user()
    assert expected
    # When a queue, a call event and a log line are inserted without an owner
    call_id = add_call(database, None, events=1)
    with database.transaction() as session:
        session.add(models.Queue(name="q1"))
        session.add(models.Log(source="test", text="hello"))
    # Then each carries that user
    with database.transaction() as session:
        assert session.scalars(select(models.Queue.owner)).one() == expected
        assert session.scalars(select(models.Call.owner)).one() == expected
        assert (
            session.scalars(select(models.Event.owner).where(models.Event.call_id == call_id)).one()
            == expected
        )
        assert session.scalars(select(models.Log.owner)).one() == expected


def test_owner_given_explicitly_is_kept(database: Database) -> None:
    # Given a queue created with an owner
    with database.transaction() as session:
        session.add(models.Queue(name="q1", owner="alice"))
    # Then the session does not overwrite it
    with database.transaction() as session:
        assert session.scalars(select(models.Queue.owner)).one() == "alice"


def test_updated_changes_on_update(database: Database) -> None:
    # Given a queue just created
    with database.transaction() as session:
        session.add(models.Queue(name="q1"))
    with database.transaction() as session:
        queue = session.scalars(select(models.Queue)).one()
        created, updated = queue.created, queue.updated
    # When it is changed a moment later
    time.sleep(0.01)
    with database.transaction() as session:
        queue = session.scalars(select(models.Queue)).one()
        queue.description = "changed"
    # Then `updated` moved forward and `created` did not
    with database.transaction() as session:
        queue = session.scalars(select(models.Queue)).one()
    assert queue.updated > updated
    assert queue.created == created


# --- ON DELETE rules -----------------------------------------------------------------------


def _remaining(database: Database, net: Network) -> dict[str, int]:
    with database.transaction() as session:
        return {
            "tasks": len(session.scalars(select(models.Task.id)).all()),
            "arguments": len(session.scalars(select(models.Argument.id)).all()),
            "sockets": len(session.scalars(select(models.Socket.id)).all()),
            "plugs": len(session.scalars(select(models.Plug.id)).all()),
            "queues": len(
                session.scalars(select(models.Queue.id).where(models.Queue.id == net.queue)).all()
            ),
        }


def test_processor_delete_statement_cascades_in_the_database(database: Database) -> None:
    # Given a processor with tasks, an argument, sockets and a plug
    net = build_network(database)
    assert _remaining(database, net) == {
        "tasks": 2,
        "arguments": 1,
        "sockets": 2,
        "plugs": 1,
        "queues": 1,
    }
    # When the processor is deleted with a DELETE statement (no ORM cascade involved)
    with database.transaction() as session:
        session.execute(delete(models.Processor).where(models.Processor.id == net.processor))
    # Then the database removed everything that hung off it, but kept the queue
    assert _remaining(database, net) == {
        "tasks": 0,
        "arguments": 0,
        "sockets": 0,
        "plugs": 0,
        "queues": 1,
    }


def test_processor_orm_delete_cascades(database: Database) -> None:
    # Given a processor with tasks, an argument, sockets and a plug
    net = build_network(database)
    # When the processor is deleted through the ORM
    with database.transaction() as session:
        session.delete(session.get_one(models.Processor, net.processor))
    # Then its tasks, arguments, sockets and plugs are gone
    assert _remaining(database, net) == {
        "tasks": 0,
        "arguments": 0,
        "sockets": 0,
        "plugs": 0,
        "queues": 1,
    }


def test_socket_delete_leaves_its_calls_history_as_it_was(database: Database) -> None:
    # Given a socket with a call and a plug
    net = build_network(database)
    call_id = add_call(database, net.source, events=2)
    # When the socket is deleted with a DELETE statement
    with database.transaction() as session:
        session.execute(delete(models.Socket).where(models.Socket.id == net.source))
    # Then the call (and its events) survive unchanged, still naming the socket
    with database.transaction() as session:
        call = session.get_one(models.Call, call_id)
        assert call.socket_id == net.source
        assert call.name == "s.source"
        assert len(call.events) == 2
        # and the plug that started at the socket is gone
        assert session.get(models.Plug, net.plug) is None


def test_call_delete_removes_its_events(database: Database) -> None:
    # Given two calls, with three events and one event
    doomed = add_call(database, None, events=3)
    kept = add_call(database, None, events=1)
    assert count_rows(database, models.Event) == 4
    # When the first call is deleted with a DELETE statement
    with database.transaction() as session:
        session.execute(delete(models.Call).where(models.Call.id == doomed))
    # Then only its events went with it
    with database.transaction() as session:
        assert session.scalars(select(models.Event.call_id)).all() == [kept]


def test_queue_in_use_delete_is_refused_by_the_database(database: Database) -> None:
    # Given a queue used by sockets and a plug
    net = build_network(database)
    # When it is deleted with a DELETE statement, bypassing the CLI's own check
    with pytest.raises(IntegrityError), database.transaction() as session:
        session.execute(delete(models.Queue).where(models.Queue.id == net.queue))
    # Then the queue and its users are still there
    assert _remaining(database, net) == {
        "tasks": 2,
        "arguments": 1,
        "sockets": 2,
        "plugs": 1,
        "queues": 1,
    }


def test_queue_unused_delete_is_allowed(database: Database) -> None:
    # Given a queue nothing uses
    with database.transaction() as session:
        session.add(models.Queue(name="lonely"))
    # When it is deleted with a DELETE statement
    with database.transaction() as session:
        session.execute(delete(models.Queue))
    # Then it is gone
    assert count_rows(database, models.Queue) == 0


# --- ORM deletes of objects whose dependants are loaded ------------------------------------
#
# The one-to-many relationships below rely on ON DELETE CASCADE (passive_deletes=True)
# but have no delete cascade; once the collection is loaded, the ORM "detaches" the
# children by setting their foreign key to NULL instead of letting the database delete
# them: a NOT NULL violation, or orphans the database would have removed.

LOADED_DELETE_BUG = (
    "Socket.outgoing/incoming, Node.agent and Agent.workers have passive_deletes=True "
    "without a delete cascade (or passive_deletes='all'): when loaded, the ORM nulls the "
    "children's foreign key instead of leaving ON DELETE CASCADE to the database"
)


def test_processor_orm_delete_with_loaded_plugs_cascades(database: Database) -> None:
    # Given a processor whose sockets' plugs are loaded in the session
    net = build_network(database)
    # When it is deleted through the ORM in that session
    with database.transaction() as session:
        processor = session.get_one(models.Processor, net.processor)
        assert [len(socket.outgoing) for socket in processor.sockets] == [1, 0]
        session.delete(processor)
    # Then everything that hung off it went with it
    assert _remaining(database, net)["plugs"] == 0


def test_socket_api_delete_with_loaded_plugs_cascades(database: Database) -> None:
    # Given a socket whose outgoing plugs were looked at in the same transaction
    net = build_network(database)
    # When it is deleted through the object API
    with database.transaction() as session:
        socket = session.get_one(models.Socket, net.source)
        assert [plug.name for plug in socket.outgoing] == ["plug1"]
        cascaded = objects.delete(session, objects.KINDS["socket"], "s.source")
    # Then the plug went with it, as the database's ON DELETE CASCADE says
    assert cascaded == {"plugs": 1}
    assert count_rows(database, models.Plug) == 0


def _node_with_agent_and_worker(database: Database) -> None:
    with database.transaction() as session:
        processor = models.Processor(name="proc1", module="m", gitrepo="https://x/y")
        node = models.Node(name="n1", hostname="h1")
        agent = models.Agent(name="a1", hostname="h1", node=node)
        session.add_all([processor, node, agent])
        session.flush()
        session.add(models.Worker(name="w1", hostname="h1", agent=agent, processor_id=processor.id))


def test_node_delete_statement_cascades_to_agent_and_workers(database: Database) -> None:
    # Given a node with an agent running a worker
    _node_with_agent_and_worker(database)
    # When the node is deleted with a DELETE statement
    with database.transaction() as session:
        session.execute(delete(models.Node))
    # Then the agent and its worker went with it
    assert count_rows(database, models.Agent) == 0
    assert count_rows(database, models.Worker) == 0


def test_node_orm_delete_with_loaded_agent_cascades(database: Database) -> None:
    # Given a node whose agent is loaded in the session
    _node_with_agent_and_worker(database)
    # When the node is deleted through the ORM
    with database.transaction() as session:
        node = session.scalars(select(models.Node)).one()
        assert node.agent is not None
        session.delete(node)
    # Then its agent went with it
    assert count_rows(database, models.Agent) == 0


def test_agent_orm_delete_with_loaded_workers_removes_them(database: Database) -> None:
    # Given an agent whose workers are loaded in the session
    _node_with_agent_and_worker(database)
    # When the agent is deleted through the ORM
    with database.transaction() as session:
        agent = session.scalars(select(models.Agent)).one()
        assert [worker.name for worker in agent.workers] == ["w1"]
        session.delete(agent)
    # Then its workers are gone, as ON DELETE CASCADE would have done
    assert count_rows(database, models.Worker) == 0


# --- unique and check constraints ----------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: models.Queue(name="same"), id="queue"),
        pytest.param(
            lambda: models.Processor(name="same", module="m", gitrepo="https://x/y"),
            id="processor",
        ),
        pytest.param(lambda: models.Role(name="same"), id="role"),
        pytest.param(lambda: models.Node(name="same", hostname="h"), id="node"),
        pytest.param(lambda: models.Setting(name="same", value="v"), id="setting"),
    ],
)
def test_name_unique_is_enforced_by_the_database(database: Database, make: Any) -> None:
    # Given an object called "same"
    with database.transaction() as session:
        session.add(make())
    # When a second one with that name is inserted
    with pytest.raises(IntegrityError), database.transaction() as session:
        session.add(make())
    # Then the database refused it and kept the first
    assert count_rows(database, type(make())) == 1


def test_socket_name_unique_is_enforced_by_the_database(database: Database) -> None:
    # Given a network with a socket called "s.source"
    net = build_network(database)
    # When another socket with that name is inserted
    with pytest.raises(IntegrityError), database.transaction() as session:
        session.add(
            models.Socket(
                name="s.source",
                processor_id=net.processor,
                task_id=net.task,
                queue_id=net.queue,
            )
        )
    # Then there are still two sockets
    assert count_rows(database, models.Socket) == 2


def test_user_email_unique_is_enforced_by_the_database(database: Database) -> None:
    # Given a user with an e-mail address
    with database.transaction() as session:
        session.add(models.User(name="joe", email="joe@x.org", password_hash="h"))
    # When another user with the same address is inserted
    with pytest.raises(IntegrityError), database.transaction() as session:
        session.add(models.User(name="jim", email="joe@x.org", password_hash="h"))
    # Then only the first exists
    assert count_rows(database, models.User) == 1


def test_check_refuses_invalid_enum_value_in_raw_insert(database: Database) -> None:
    # Given a raw INSERT of a queue whose type is not a QueueType
    statement, params = raw_row("queues", name="q1", type="bogus", durable=True)
    # When it is executed, bypassing the ORM's enum validation
    with pytest.raises(IntegrityError), database.transaction() as session:
        session.execute(statement, params)
    # Then the database refused it
    assert count_rows(database, models.Queue) == 0


def test_check_accepts_valid_enum_value_in_raw_insert(database: Database) -> None:
    # Given the same raw INSERT with a valid type
    statement, params = raw_row("queues", name="q1", type="fanout", durable=True)
    # When it is executed
    with database.transaction() as session:
        session.execute(statement, params)
    # Then the row is there and reads back as the enum member
    with database.transaction() as session:
        queue = session.scalars(select(models.Queue)).one()
    assert queue.type is QueueType.FANOUT
    assert queue.id == params["id"]


@pytest.mark.parametrize(
    ("column", "value"),
    [("concurrency", 0), ("retries", -1), ("retry_delay", -1), ("timelimit", 0)],
)
def test_check_refuses_out_of_range_processor_value_in_raw_insert(
    database: Database, column: str, value: int
) -> None:
    # Given a raw INSERT of a processor with an out-of-range value
    row = {
        "name": "proc1",
        "module": "m",
        "gitrepo": "https://x/y",
        "branch": "main",
        "concurrency": 1,
        "retries": 0,
        "retry_delay": 1,
        "beat": False,
        "enabled": True,
        "status": "ready",
        "requested_status": "running",
    }
    statement, params = raw_row("processors", **{**row, column: value})
    # When it is executed
    with pytest.raises(IntegrityError), database.transaction() as session:
        session.execute(statement, params)
    # Then the database refused it, while the valid row is accepted
    assert count_rows(database, models.Processor) == 0
    statement, params = raw_row("processors", **row)
    with database.transaction() as session:
        session.execute(statement, params)
    assert count_rows(database, models.Processor) == 1


def test_check_refuses_invalid_call_state_in_raw_insert(database: Database) -> None:
    # Given a raw INSERT of a call whose state is not a CallState
    statement, params = raw_row(
        "calls", name="c", tracking_id=uuid.uuid4(), state="exploded", attempt=1
    )
    statement = statement.bindparams(bindparam("tracking_id", type_=models.Call.tracking_id.type))
    # When it is executed
    with pytest.raises(IntegrityError), database.transaction() as session:
        session.execute(statement, params)
    # Then the database refused it
    assert count_rows(database, models.Call) == 0
    assert "exploded" not in {state.value for state in CallState}


def test_check_refuses_both_interval_and_cron_on_a_socket(database: Database) -> None:
    # Given a network with a socket
    net = build_network(database)
    # When the socket is given both an interval and a cron schedule
    schedule = (
        update(models.Socket)
        .where(models.Socket.id == net.source)
        .values(interval=60, cron="* * * * *")
    )
    with pytest.raises(IntegrityError), database.transaction() as session:
        session.execute(schedule)
    # Then the database refused the change
    with database.transaction() as session:
        socket = session.get_one(models.Socket, net.source)
        assert (socket.interval, socket.cron) == (None, None)


# --- secrets -------------------------------------------------------------------------------


def test_users_table_has_no_clear_text_password_column(database: Database) -> None:
    # Given the users table as the database describes it
    with database.connect() as conn:
        columns = {column["name"] for column in inspect(conn).get_columns("users")}
    # Then it stores a hash and nothing that could hold the password itself
    assert "password_hash" in columns
    assert not {name for name in columns if "password" in name} - {"password_hash"}
    assert "password" not in columns


def test_password_hash_is_secret_and_left_out_of_to_dict(database: Database) -> None:
    # Given a user stored with a hashed password
    secret = "s3cretpassword"
    with database.transaction() as session:
        session.add(models.User(name="joe", email="joe@x.org", password_hash=hash_password(secret)))
    with database.transaction() as session:
        user = session.scalars(select(models.User)).one()
    # Then the column is marked secret
    assert models.User.__table__.c.password_hash.info.get("secret") is True
    # and the stored value is a hash of the password, not the password
    assert user.password_hash != secret
    assert verify_password(user.password_hash, secret)
    # and serialising the user leaves the hash (and the password) out
    shown = to_dict(user)
    assert shown["name"] == "joe"
    assert shown["email"] == "joe@x.org"
    assert "password_hash" not in shown
    assert "password_hash" not in to_dict(user, raw=True)
    assert secret not in repr(shown)
