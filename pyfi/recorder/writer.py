"""The SQL of the recorder: idempotent upserts of calls and inserts of events.

Every statement here may run twice for the same records (a commit whose
acknowledgement was lost with the connection is retried), so each one is
written to make a second run harmless: calls are upserted by id, events carry
ids fixed before the first attempt and skip rows that already exist.

Statements run through ``executemany``, one per group of calls that set the
same columns, on PostgreSQL and SQLite alike (both dialects' ``insert()`` have
``on_conflict_do_update``).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Table, and_, case, not_, or_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert

from pyfi.db.base import Base
from pyfi.db.enums import CallState
from pyfi.db.types import utcnow
from pyfi.errors import DatabaseNotInitialised, DatabaseUnavailable
from pyfi.recorder.buffer import FINAL_STATES, PendingCall, PendingEvent

# The name of a call known only from a later update or an event, because its
# first update was dropped or is recorded elsewhere. The row must exist (events
# have a foreign key to it) and ``name`` is NOT NULL; the real name replaces
# this one as soon as an update carrying it is written.
UNKNOWN_CALL_NAME = "(unknown)"


class Statements:
    """The statements of one dialect, upserts cached per set of updated columns."""

    def __init__(self, dialect: str) -> None:
        self._postgresql = dialect == "postgresql"
        self._calls: Table = Base.metadata.tables["calls"]
        self._events: Table = Base.metadata.tables["events"]
        self._upserts: dict[frozenset[str], Insert] = {}

    def _insert(self, table: Table) -> postgresql.Insert | sqlite.Insert:
        # The two dialects' inserts share the ON CONFLICT API but not a class.
        return postgresql.insert(table) if self._postgresql else sqlite.insert(table)

    def upsert_call(self, present: frozenset[str]) -> Insert:
        """``INSERT ... ON CONFLICT (id) DO UPDATE`` of exactly the ``present`` columns.

        ``created`` and ``owner`` are never updated, so they keep the first
        writer's values. ``updated`` is set explicitly: ``onupdate`` defaults
        do not apply to the UPDATE half of an upsert. ``state`` does not go
        from final to non-final and ``attempt`` does not decrease, whatever
        order batches arrive in.
        """
        statement = self._upserts.get(present)
        if statement is None:
            table = self._calls
            insert = self._insert(table)
            new = insert.excluded
            set_: dict[str, Any] = {"updated": new.updated}
            for name in sorted(present):
                if name == "state":
                    # OR-ed equalities, not IN: an IN list is an "expanding"
                    # parameter, which executemany() cannot take.
                    was_final = or_(*(table.c.state == final for final in FINAL_STATES))
                    is_final = or_(*(new.state == final for final in FINAL_STATES))
                    backwards = and_(was_final, not_(is_final))
                    set_[name] = case((backwards, table.c.state), else_=new.state)
                elif name == "attempt":
                    set_[name] = case(
                        (new.attempt > table.c.attempt, new.attempt), else_=table.c.attempt
                    )
                else:
                    set_[name] = new[name]
            statement = insert.on_conflict_do_update(index_elements=[table.c.id], set_=set_)
            self._upserts[present] = statement
        return statement

    def ensure_calls(self) -> Insert:
        """Insert stand-in call rows for events whose call row may not exist yet."""
        return self._insert(self._calls).on_conflict_do_nothing(index_elements=[self._calls.c.id])

    def insert_events(self) -> Insert:
        """Insert events, skipping any that a lost commit already wrote."""
        return self._insert(self._events).on_conflict_do_nothing(index_elements=[self._events.c.id])


def write(
    session: Session,
    statements: Statements,
    calls: list[PendingCall],
    events: list[PendingEvent],
) -> None:
    """Write ``calls``, then ``events``, in the session's transaction."""
    owner = session.info.get("owner")
    now = utcnow()
    groups: dict[frozenset[str], list[dict[str, Any]]] = {}
    for entry in calls:
        row = {
            **_stand_in(entry.call_id, entry.created, now, owner),
            **entry.values,
            "id": entry.call_id,
        }
        groups.setdefault(frozenset(entry.values), []).append(row)
    for present, rows in groups.items():
        session.execute(statements.upsert_call(present), rows)
    if not events:
        return
    known = {entry.call_id for entry in calls}
    stand_ins: dict[uuid.UUID, dict[str, Any]] = {}
    for event in events:
        if event.call_id not in known and event.call_id not in stand_ins:
            stand_ins[event.call_id] = _stand_in(event.call_id, event.at, now, owner)
    if stand_ins:
        session.execute(statements.ensure_calls(), list(stand_ins.values()))
    rows = []
    for event in events:
        if event.id is None:
            event.id = uuid.uuid4()
        rows.append(
            {
                "id": event.id,
                "name": event.name,
                "note": event.note,
                "call_id": event.call_id,
                "created": event.at,
                "owner": owner,
            }
        )
    session.execute(statements.insert_events(), rows)


def _stand_in(
    call_id: uuid.UUID, created: datetime, now: datetime, owner: str | None
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
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def describe(exc: BaseException) -> str:
    """The first line of an error, without the SQL and parameters SQLAlchemy appends."""
    original = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = [line.strip() for line in str(original).splitlines() if line.strip()]
    return f"{type(original).__name__}: {lines[0] if lines else ''}"[:300]
