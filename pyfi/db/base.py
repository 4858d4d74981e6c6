"""Declarative base, naming convention and the mixins every model shares."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from sqlalchemy import MetaData, String, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from pyfi.db.types import UTCDateTime, utcnow

# Deterministic constraint names, so that migrations can drop and alter
# constraints by name on every database (SQLite batch mode needs them).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Reusable annotated column types.
uuid_pk = Annotated[
    uuid.UUID, mapped_column(Uuid, primary_key=True, default=uuid.uuid4, sort_order=-100)
]
name_str = Annotated[str, mapped_column(String(120), nullable=False)]
unique_name = Annotated[str, mapped_column(String(120), nullable=False, unique=True)]
timestamp = Annotated[datetime, mapped_column(UTCDateTime, nullable=False, default=utcnow)]
optional_timestamp = Annotated[datetime | None, mapped_column(UTCDateTime, nullable=True)]


class Base(DeclarativeBase):
    """Base class of every pyfi table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {uuid.UUID: Uuid, datetime: UTCDateTime}


class Identified:
    """A UUID primary key generated in Python, identical on every database."""

    id: Mapped[uuid_pk]


class Audited:
    """Who created a row and when it was created and last changed.

    ``owner`` is the database user of the session that inserted the row; the
    session fills it in (see :mod:`pyfi.db.session`), so neither callers nor
    a PostgreSQL-only ``current_user`` default are needed.
    """

    owner: Mapped[str | None] = mapped_column(String(120), sort_order=100)
    created: Mapped[datetime] = mapped_column(
        UTCDateTime, nullable=False, default=utcnow, sort_order=101
    )
    updated: Mapped[datetime] = mapped_column(
        UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow, sort_order=102
    )
