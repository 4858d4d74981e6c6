"""The recorder's PostgreSQL statements, compiled once for psycopg (no database needed)."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect

from pyfi.db.enums import EventName
from pyfi.recorder.postgres import EVENT_COLUMNS, compile_statement
from pyfi.recorder.writer import Statements

DIALECT = psycopg_dialect.dialect()  # type: ignore[no-untyped-call]


def test_the_upserts_constants_are_bound_as_the_columns_store_them() -> None:
    # Given the upsert of calls compiled for psycopg
    upsert = compile_statement(Statements("postgresql").upsert_calls(), DIALECT)

    # Then its constants are plain values (psycopg would bind an enum member by its name)
    assert upsert.constants
    assert not [value for value in upsert.constants.values() if isinstance(value, enum.Enum)]
    assert {"finished", "failed", "dead", "pending", "(unknown)"} <= set(upsert.constants.values())

    # And what changes with each batch is a parameter, not a constant
    assert {"rows", "updated", "owner"}.isdisjoint(upsert.constants)
    for name in ("rows", "updated", "owner"):
        assert f"%({name})s" in upsert.sql


def test_event_parameters_are_converted_as_sqlalchemy_would() -> None:
    # Given the insert of events compiled for psycopg
    insert = compile_statement(
        Statements("postgresql").insert_events(), DIALECT, list(EVENT_COLUMNS)
    )
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    event_id, call_id = uuid.uuid4(), uuid.uuid4()

    # When an event's values are bound
    bound = insert.parameters(
        {"id": event_id, "name": EventName.FAILURE, "note": None, "call_id": call_id,
         "created": at, "owner": "alice"}
    )  # fmt: skip

    # Then the enum is its stored text, the instant is in UTC, the rest unchanged
    assert bound["name"] == "failure"
    assert bound["created"] == at
    assert bound["created"].tzinfo == UTC
    assert (bound["id"], bound["call_id"], bound["note"], bound["owner"]) == (
        event_id, call_id, None, "alice",
    )  # fmt: skip

    # And a naive instant is refused, as everywhere else in pyfi
    with pytest.raises(ValueError, match="naive datetime"):
        insert.parameters({"created": datetime(2026, 1, 2)})
