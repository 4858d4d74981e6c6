"""What happened: calls of socket functions, their events, and the audit log."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from pyfi.db.base import Audited, Base, Identified, name_str, optional_timestamp, timestamp
from pyfi.db.enums import UNFINISHED_STATES, CallState, EventName
from pyfi.db.types import UTCDateTime, enum_column

# The predicate of the partial index of unfinished calls, as both databases
# write it; a query that lists unfinished calls by state uses the index.
UNFINISHED_CALL = text(
    "state IN ({})".format(", ".join(f"'{state.value}'" for state in UNFINISHED_STATES))
)


class Call(Identified, Audited, Base):
    """One invocation of a socket function.

    ``parent_id`` is deliberately not a foreign key: call records are written
    in batches, possibly out of order, and a child may land before its parent.
    Nor is ``socket_id``: history outlives the socket (it keeps the socket's
    name and id), a foreign key cost every recorded row a lookup and a lock
    on the socket's row, and deleting a socket would have rewritten every
    call it ever had in one transaction.

    Every index is paid for by every recorded call, so there are only the
    ones a query needs: ``tracking_id`` (a flow run's calls, provenance),
    ``created`` (``flow ls calls``, newest first) and the unfinished calls by
    time, a partial index that finished calls never enter.

    The routine lifecycle lives on the row itself (``received``, ``started``,
    ``finished``): one row per call instead of one per step, which is what lets
    recording keep up with the workers. ``events`` holds only what a timestamp
    cannot say (retries, failures, with their notes).
    """

    __tablename__ = "calls"
    __table_args__ = (
        Index("ix_calls_created", "created"),
        Index(
            "ix_calls_unfinished",
            "created",
            postgresql_where=UNFINISHED_CALL,
            sqlite_where=UNFINISHED_CALL,
        ),
    )

    name: Mapped[str] = mapped_column(String(255), nullable=False)
    socket_id: Mapped[uuid.UUID | None] = mapped_column()
    tracking_id: Mapped[uuid.UUID] = mapped_column(nullable=False, index=True)
    parent_id: Mapped[uuid.UUID | None] = mapped_column()
    state: Mapped[CallState] = mapped_column(
        enum_column(CallState, "call_state"), nullable=False, default=CallState.PENDING
    )
    argument: Mapped[str | None] = mapped_column(String(120))
    attempt: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    hostname: Mapped[str | None] = mapped_column(String(255))
    received: Mapped[optional_timestamp]
    started: Mapped[optional_timestamp]
    finished: Mapped[optional_timestamp]
    error: Mapped[str | None] = mapped_column(Text)

    events: Mapped[list[Event]] = relationship(
        back_populates="call",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Event.created",
    )


class Event(Identified, Base):
    """A notable event of a call: a retry or a failure, with its note.

    Workers record no row for the routine steps (received, prerun, postrun):
    those are the call's timestamps; :func:`pyfi.provenance.call_events` shows
    both together, in order.
    """

    __tablename__ = "events"

    name: Mapped[EventName] = mapped_column(enum_column(EventName, "event_name"), nullable=False)
    note: Mapped[str | None] = mapped_column(Text)
    owner: Mapped[str | None] = mapped_column(String(120))
    created: Mapped[timestamp]
    call_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("calls.id", ondelete="CASCADE"), nullable=False, index=True
    )

    call: Mapped[Call] = relationship(back_populates="events")


class Log(Identified, Base):
    """An audit line about an object of the meta-model."""

    __tablename__ = "logs"
    __table_args__ = (
        Index("ix_logs_object", "object_kind", "object_id"),
        # `flow ls log --since` reads the newest lines.
        Index("ix_logs_created", "created"),
    )

    created: Mapped[timestamp]
    owner: Mapped[str | None] = mapped_column(String(120))
    source: Mapped[name_str]
    text: Mapped[str] = mapped_column(Text, nullable=False)
    object_kind: Mapped[str | None] = mapped_column(String(40))
    object_id: Mapped[uuid.UUID | None] = mapped_column()
    public: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class ScheduleFire(Base):
    """One scheduled instant of a socket, claimed and fired at most once.

    The id is derived from the socket and the instant (see
    :func:`pyfi.scheduler.fires.fire_id`) and is the id of the call it
    published. The unique (socket, instant) pair is the claim, committed
    before the call is published: a second scheduler racing for the same
    instant (after a leader change, or a crash) fails to insert it and
    publishes nothing.
    """

    __tablename__ = "schedule_fires"
    __table_args__ = (UniqueConstraint("socket_id", "instant"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    socket_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sockets.id", ondelete="CASCADE"), nullable=False
    )
    instant: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    # When the broker took the call (its lateness is fired - instant); NULL
    # while it is being published, or if its scheduler died meanwhile.
    fired: Mapped[datetime | None] = mapped_column(UTCDateTime)
    agent: Mapped[str | None] = mapped_column(String(120))
