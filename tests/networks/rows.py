"""Helpers for tests of declared networks: full row dumps and the statements sent."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, select

from pyfi.db import models
from pyfi.db.serialize import to_dict
from pyfi.db.session import Database

TABLES = (models.Queue, models.Processor, models.Task, models.Argument, models.Socket, models.Plug)


def dump(database: Database) -> dict[str, list[dict[str, Any]]]:
    """Every row of the network's tables, every column (ids and timestamps included)."""
    with database.transaction() as session:
        return {
            model.__tablename__: sorted(
                (to_dict(row, raw=True) for row in session.scalars(select(model))),
                key=lambda row: str(row["id"]),
            )
            for model in TABLES
        }


def writes(seen: list[str]) -> list[str]:
    """The writing statements among ``seen``, as "VERB table"."""
    found = []
    for statement in seen:
        words = statement.replace('"', "").split()
        verb = words[0].upper()
        if verb in ("INSERT", "UPDATE", "DELETE"):
            table = words[2] if verb in ("INSERT", "DELETE") else words[1]
            found.append(f"{verb} {table}")
    return found


@contextmanager
def statements(database: Database) -> Iterator[list[str]]:
    """Every SQL statement sent to ``database`` inside the block."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(database.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(database.engine, "before_cursor_execute", record)
