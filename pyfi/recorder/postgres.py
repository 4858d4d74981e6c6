"""The recorder's PostgreSQL writer: a connection of its own, a batch of calls one statement.

Everything else in pyfi writes through SQLAlchemy sessions; the recorder did
too, and a batch cost four round trips (the pool's liveness ping, ``BEGIN``,
the upsert, ``COMMIT``) and ≈ 0.6 ms of the writer thread's CPU even for one
call, most of it SQLAlchemy preparing the execution of a statement it had
cached. The writer runs inside a worker, where the time it holds the
interpreter is time the calls in flight wait: the slowest of a run of
sequential calls were the ones that overlapped a write.

So the statements are compiled once, from the same SQLAlchemy constructs the
SQLite path executes (the merge rules live in :mod:`.writer` alone), and run
on a plain psycopg connection in autocommit mode: a batch of calls is one
statement, its own transaction, one round trip. A batch with events (failures
and retries: rare) is one explicit transaction. No liveness ping: a lost
connection fails the write, the recorder retries after its backoff, and the
next attempt connects anew.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import errors as pg_errors
from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

from pyfi.db.direct import connect_direct, conninfo_from_url
from pyfi.db.session import not_initialised
from pyfi.db.types import utcnow
from pyfi.recorder.buffer import PendingCall, PendingEvent
from pyfi.recorder.writer import Statements, json_rows

if TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import Dialect

APPLICATION_NAME = "pyfi-recorder"
EVENT_COLUMNS = ("id", "name", "note", "call_id", "created", "owner")
# The statement's own parameters, which change with every batch.
_BATCH_PARAMETERS = frozenset({"rows", "updated", "owner"})


@dataclass(frozen=True)
class CompiledStatement:
    """A statement as psycopg takes it: SQL text, its constants, its parameters' conversions.

    SQLAlchemy turns a value into what the driver binds (an enum member into
    its text, an instant into UTC) at each execution; here that is decided
    once, and only the parameters that change pass through a conversion.
    """

    sql: str
    constants: dict[str, Any]
    conversions: dict[str, Callable[[Any], Any]]

    def parameters(self, values: dict[str, Any]) -> dict[str, Any]:
        """The constants and ``values``, each converted as its column binds it."""
        bound = dict(self.constants)
        conversions = self.conversions
        for name, value in values.items():
            convert = conversions.get(name)
            bound[name] = value if convert is None or value is None else convert(value)
        return bound


def compile_statement(
    statement: ClauseElement, dialect: Dialect, column_keys: list[str] | None = None
) -> CompiledStatement:
    """Compile ``statement`` for psycopg, once: its text, constants and conversions."""
    compiled = statement.compile(dialect=dialect, column_keys=column_keys)
    assert isinstance(compiled, SQLCompiler)
    constants: dict[str, Any] = {}
    conversions: dict[str, Callable[[Any], Any]] = {}
    for bind, name in compiled.bind_names.items():
        convert = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if bind.required or name in _BATCH_PARAMETERS:
            if convert is not None:
                conversions[name] = convert
        else:
            value = bind.effective_value
            constants[name] = convert(value) if convert is not None else value
    return CompiledStatement(str(compiled), constants, conversions)


class PostgresWriter:
    """Writes the recorder's batches to PostgreSQL over one connection, opened when first needed.

    Used by the recorder's writer thread alone: not thread-safe.

    Raises (from :meth:`write`)
    ------
    psycopg.OperationalError, psycopg.InterfaceError
        The server is away or the connection was lost (transient: retry).
    DatabaseNotInitialised
        The tables do not exist yet (transient too).
    psycopg.Error
        The database refused the content (not transient).
    """

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._conninfo = conninfo_from_url(database_url)
        dialect: Dialect = psycopg_dialect.dialect()  # type: ignore[no-untyped-call]
        statements = Statements("postgresql")
        self._upsert = compile_statement(statements.upsert_calls(), dialect)
        self._insert_events = compile_statement(
            statements.insert_events(), dialect, list(EVENT_COLUMNS)
        )
        self._connection: psycopg.Connection[Any] | None = None
        self._owner: str | None = None

    def write(self, calls: list[PendingCall], events: list[PendingEvent]) -> None:
        """Write ``calls``, then ``events``, in one transaction; idempotent (see :mod:`.writer`)."""
        connection = self._connect()
        try:
            if not events:
                connection.execute(self._upsert.sql, self._upsert_parameters(calls))
                return
            with connection.transaction():
                # An event's call may not have a row yet (its first update was
                # dropped or is recorded elsewhere): the upsert gives it one,
                # from its id alone, which later updates complete.
                known = {entry.call_id for entry in calls}
                orphans = {
                    event.call_id: event.at.timestamp()
                    for event in reversed(events)  # the first event's instant wins
                    if event.call_id not in known
                }
                connection.execute(self._upsert.sql, self._upsert_parameters(calls, orphans))
                with connection.cursor() as cursor:
                    cursor.executemany(self._insert_events.sql, self._event_rows(events))
        except pg_errors.UndefinedTable as exc:
            raise not_initialised(self.database_url) from exc
        except (psycopg.OperationalError, psycopg.InterfaceError):
            self.close()  # connect anew at the next attempt
            raise

    def close(self) -> None:
        """Close the connection; the next write opens another."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def _connect(self) -> psycopg.Connection[Any]:
        connection = self._connection
        if connection is not None and not connection.closed:
            return connection
        connection, row = connect_direct(self._conninfo, APPLICATION_NAME, "SELECT current_user")
        self._owner = str(row[0]) if row else None
        self._connection = connection
        return connection

    def _upsert_parameters(
        self, calls: list[PendingCall], orphans: dict[str, float] | None = None
    ) -> dict[str, Any]:
        rows = json_rows(calls, orphans or {})
        return self._upsert.parameters({"rows": rows, "updated": utcnow(), "owner": self._owner})

    def _event_rows(self, events: list[PendingEvent]) -> list[dict[str, Any]]:
        rows = []
        for event in events:
            if event.id is None:  # fixed before the first attempt: a retry skips it
                event.id = uuid.uuid4()
            rows.append(
                self._insert_events.parameters(
                    {
                        "id": event.id,
                        "name": event.name,
                        "note": event.note,
                        "call_id": uuid.UUID(event.call_id),
                        "created": event.at,
                        "owner": self._owner,
                    }
                )
            )
        return rows
