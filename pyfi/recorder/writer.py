"""The SQL of the recorder: idempotent upserts of calls and inserts of events.

Every statement here may run twice for the same records (a commit whose
acknowledgement was lost with the connection is retried), so each one is
written to make a second run harmless: calls are upserted by id, events carry
ids fixed before the first attempt and skip rows that already exist.

A batch of calls is one statement whatever its size. Each row carries every
column, ``NULL`` for what the update left alone, and the merge rules live in
the ``ON CONFLICT DO UPDATE`` clause, so rows setting different columns share
the statement. On PostgreSQL the rows travel as one JSON document read by
``json_to_recordset()``: one parameter and one round trip for the batch, where
``executemany`` would adapt and send every row on its own (that per-row work
was most of what recording cost a worker); :mod:`.postgres` runs it. SQLite,
embedded and in-process, takes the same statement through ``executemany`` in
a session (:class:`SessionWriter`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
import psycopg
from sqlalchemy import (
    ColumnElement,
    DateTime,
    Float,
    Integer,
    String,
    Table,
    Text,
    Uuid,
    and_,
    bindparam,
    case,
    cast,
    column,
    func,
    not_,
    or_,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert
from sqlalchemy.types import TypeEngine

from pyfi.db.base import Base
from pyfi.db.enums import CallState
from pyfi.db.session import Database
from pyfi.db.types import utcnow
from pyfi.errors import DatabaseNotInitialised, DatabaseUnavailable
from pyfi.recorder.buffer import FINAL_STATES, UPDATE_FIELDS, PendingCall, PendingEvent

# The name of a call known only from a later update or an event, because its
# first update was dropped or is recorded elsewhere. The row must exist (events
# have a foreign key to it) and ``name`` is NOT NULL; the real name replaces
# this one as soon as an update carrying it is written.
UNKNOWN_CALL_NAME = "(unknown)"

# Every column a batch row carries, with the type PostgreSQL reads it as from
# the batch's JSON document.
_ROW_TYPES: dict[str, TypeEngine[Any]] = {
    "id": Uuid(),
    "name": String(),
    "socket_id": Uuid(),
    "tracking_id": Uuid(),
    "parent_id": Uuid(),
    "argument": String(),
    "idempotency_key": String(),
    "state": String(),
    "attempt": Integer(),
    "hostname": String(),
    "received": Float(),  # seconds since the epoch, see _STAMP_COLUMNS
    "started": Float(),
    "finished": Float(),
    "error": Text(),
    "created": Float(),
    "updated": DateTime(timezone=True),
    "owner": String(),
}
CALL_COLUMNS = tuple(_ROW_TYPES)
# The same for every row of a batch: bound once per statement, not in each row.
_BATCH_COLUMNS = frozenset({"updated", "owner"})
# Instants, which the recorder keeps as seconds since the epoch (a float costs
# a fraction of a datetime to take and to encode). The JSON document carries
# them as numbers; PostgreSQL reads them with to_timestamp(), SQLite's rows
# get datetimes.
_STAMP_COLUMNS = ("received", "started", "finished", "created")


_ID_COLUMNS = tuple(name for name, type_ in _ROW_TYPES.items() if isinstance(type_, Uuid))
assert set(UPDATE_FIELDS) <= set(CALL_COLUMNS), "a CallUpdate field has no column"


class Statements:
    """The statements of one dialect, built once."""

    def __init__(self, dialect: str) -> None:
        self._postgresql = dialect == "postgresql"
        self._calls: Table = Base.metadata.tables["calls"]
        self._events: Table = Base.metadata.tables["events"]
        self._upsert: Insert | None = None

    def _insert(self, table: Table) -> postgresql.Insert | sqlite.Insert:
        # The two dialects' inserts share the ON CONFLICT API but not a class.
        return postgresql.insert(table) if self._postgresql else sqlite.insert(table)

    @property
    def postgresql(self) -> bool:
        """True when rows go as one JSON document (see the module docstring)."""
        return self._postgresql

    def upsert_calls(self) -> Insert:
        """``INSERT ... ON CONFLICT (id) DO UPDATE`` of whole rows, merged column by column."""
        if self._upsert is None:
            insert = self._insert(self._calls)
            if self._postgresql:
                rows = (
                    func.json_to_recordset(cast(bindparam("rows", type_=Text()), postgresql.JSON()))
                    .table_valued(*(column(name, type_) for name, type_ in _ROW_TYPES.items()))
                    .render_derived(name="u", with_types=True)
                )
                # What is the same for every row of a batch travels once, as a
                # parameter; the identity's stand-ins are filled in here, not
                # in each row of the document.
                stand_ins: dict[str, Any] = {
                    "name": UNKNOWN_CALL_NAME,
                    "tracking_id": rows.c.id,
                    "state": CallState.PENDING.value,
                    "attempt": 1,
                }
                columns = [
                    bindparam(name, type_=_ROW_TYPES[name])
                    if name in _BATCH_COLUMNS
                    else func.to_timestamp(rows.c[name])
                    if name in _STAMP_COLUMNS
                    else func.coalesce(rows.c[name], stand_ins[name])
                    if name in stand_ins
                    else rows.c[name]
                    for name in CALL_COLUMNS
                ]
                insert = self._insert(self._calls).from_select(list(CALL_COLUMNS), select(*columns))
            self._upsert = insert.on_conflict_do_update(
                index_elements=[self._calls.c.id], set_=self._merge(insert.excluded)
            )
        return self._upsert

    def _merge(self, new: Any) -> dict[str, ColumnElement[Any]]:
        """The merge rules of :mod:`pyfi.recorder` as the SET clause of the upsert.

        ``created`` and ``owner`` are not updated, so they keep the first
        writer's values. The stand-ins of a row written before its identity was
        known (see :func:`_stand_in`) never replace real values.
        """
        table = self._calls
        set_: dict[str, ColumnElement[Any]] = {"updated": new.updated}
        for name in CALL_COLUMNS:
            if name in ("id", "created", "owner", "updated"):
                continue
            old = table.c[name]
            if name == "name":
                set_[name] = case((new.name == UNKNOWN_CALL_NAME, old), else_=new.name)
            elif name == "tracking_id":
                set_[name] = case((new.tracking_id == new.id, old), else_=new.tracking_id)
            elif name == "state":
                # OR-ed equalities, not IN: an IN list is an "expanding"
                # parameter, which executemany() cannot take.
                was_final = or_(*(old == final for final in FINAL_STATES))
                is_final = or_(*(new.state == final for final in FINAL_STATES))
                set_[name] = case(
                    (and_(was_final, not_(is_final)), old),
                    (new.state == CallState.PENDING, old),
                    else_=new.state,
                )
            elif name == "attempt":
                set_[name] = case((new.attempt > old, new.attempt), else_=old)
            else:
                set_[name] = func.coalesce(new[name], old)
        return set_

    def ensure_calls(self) -> Insert:
        """Insert stand-in call rows for events whose call row may not exist yet."""
        return self._insert(self._calls).on_conflict_do_nothing(index_elements=[self._calls.c.id])

    def insert_events(self) -> Insert:
        """Insert events, skipping any that a lost commit already wrote."""
        return self._insert(self._events).on_conflict_do_nothing(index_elements=[self._events.c.id])


class BatchWriter(Protocol):
    """Writes a batch in one transaction; the recorder's writer thread is its only user."""

    def write(self, calls: list[PendingCall], events: list[PendingEvent]) -> None:
        """Write ``calls``, then ``events``; raise what :func:`is_transient` sorts."""

    def close(self) -> None:
        """Release the connection(s); a later write may open them again."""


def open_writer(database_url: str) -> BatchWriter:
    """The writer for ``database_url``'s database: its own psycopg connection on PostgreSQL."""
    if make_url(database_url).get_backend_name() == "postgresql":
        from pyfi.recorder.postgres import PostgresWriter

        return PostgresWriter(database_url)
    return SessionWriter(database_url)


class SessionWriter:
    """Writes each batch in a session of a :class:`~pyfi.db.session.Database` (SQLite)."""

    def __init__(self, database_url: str) -> None:
        # Built here, in the writer thread: constructing a SQLite Database
        # creates its folder, which fails while the storage is away, and that
        # is an outage too.
        self._database = Database(database_url)
        self._statements = Statements(self._database.engine.dialect.name)

    def write(self, calls: list[PendingCall], events: list[PendingEvent]) -> None:
        with self._database.transaction() as session:
            write(session, self._statements, calls, events)

    def close(self) -> None:
        self._database.dispose()


def write(
    session: Session,
    statements: Statements,
    calls: list[PendingCall],
    events: list[PendingEvent],
) -> None:
    """Write ``calls``, then ``events``, in the session's transaction (``executemany``)."""
    owner = session.info.get("owner")
    now = utcnow()
    if calls:
        session.execute(statements.upsert_calls(), [_call_row(e, now, owner) for e in calls])
    if not events:
        return
    known = {entry.call_id for entry in calls}
    stand_ins: dict[str, dict[str, Any]] = {}
    for event in events:
        if event.call_id not in known and event.call_id not in stand_ins:
            stand_ins[event.call_id] = _typed(_stand_in(event.call_id, event.at, now, owner))
    if stand_ins:
        session.execute(statements.ensure_calls(), list(stand_ins.values()))
    event_rows = []
    for event in events:
        if event.id is None:
            event.id = uuid.uuid4()
        event_rows.append(
            {
                "id": event.id,
                "name": event.name,
                "note": event.note,
                "call_id": uuid.UUID(event.call_id),
                "created": event.at,
                "owner": owner,
            }
        )
    session.execute(statements.insert_events(), event_rows)


def json_rows(calls: list[PendingCall], orphans: dict[str, float]) -> str:
    """The batch's JSON document: each call's id, first sighting and the columns it sets.

    Columns left out read as NULL (``json_to_recordset``) and the statement
    fills in the identity's stand-ins; ids are already text and instants
    seconds since the epoch. ``orphans`` (call id: first sighting) are calls
    known only from an event: a row of stand-ins each, which the merge rules
    let no real value give way to. Encoded by orjson: a batch of 256 rows takes it
    ≈ 30 µs, where the standard library's encoder took ≈ 2.3 µs a row and,
    in a worker whose calls wait for the interpreter meanwhile, held it for
    milliseconds per batch (the calls that overlapped one were the slowest
    of a run).
    """
    rows = [{"id": entry.call_id, "created": entry.created, **entry.values} for entry in calls]
    rows.extend({"id": call_id, "created": created} for call_id, created in orphans.items())
    return orjson.dumps(rows).decode()


def _call_row(entry: PendingCall, now: datetime, owner: str | None) -> dict[str, Any]:
    """Every column of ``entry``'s row, typed for ``executemany``: ``None`` where unset."""
    row: dict[str, Any] = dict.fromkeys(CALL_COLUMNS)
    row.update(_merged(entry, entry.created, now, owner))
    return _typed(row)


def _merged(
    entry: PendingCall, created: float, updated: datetime, owner: str | None
) -> dict[str, Any]:
    """``entry``'s values over the stand-ins, its state as text."""
    row = _stand_in(entry.call_id, created, updated, owner)
    row.update(entry.values)
    state = row["state"]
    if isinstance(state, CallState):
        row["state"] = state.value
    return row


def _typed(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with ids as UUID objects and instants as datetimes, as the columns bind them."""
    for name in _ID_COLUMNS:
        value = row.get(name)
        if isinstance(value, str):
            row[name] = uuid.UUID(value)
    for name in _STAMP_COLUMNS:
        value = row.get(name)
        if isinstance(value, float | int):
            row[name] = datetime.fromtimestamp(value, UTC)
    return row


def _stand_in(
    call_id: str, created: datetime | float, now: datetime, owner: str | None
) -> dict[str, Any]:
    """Every NOT NULL column of a call row, for an update that lacks the identity."""
    return {
        "id": call_id,
        "name": UNKNOWN_CALL_NAME,
        "tracking_id": call_id,
        "state": CallState.PENDING,
        "attempt": 1,
        "created": created,
        "updated": now,
        "owner": owner,
    }


def is_transient(exc: BaseException) -> bool:
    """True for failures that waiting can cure: no server, no tables yet, a lost link.

    Anything else (a constraint, a value the column refuses) fails the same
    way however often it is retried.
    """
    if isinstance(exc, DatabaseUnavailable | DatabaseNotInitialised | OSError):
        return True
    if isinstance(exc, OperationalError | InterfaceError):  # through SQLAlchemy
        return True
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):  # straight from it
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def describe(exc: BaseException) -> str:
    """The first line of an error, without the SQL and parameters SQLAlchemy appends."""
    original = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = [line.strip() for line in str(original).splitlines() if line.strip()]
    return f"{type(original).__name__}: {lines[0] if lines else ''}"[:300]
