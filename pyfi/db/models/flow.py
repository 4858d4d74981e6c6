"""What runs and how it is wired: queues, processors, tasks, sockets and plugs."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from pyfi.db.base import Audited, Base, Identified, name_str, unique_name
from pyfi.db.enums import Misfire, PlugType, ProcessorStatus, QueueType, RequestedStatus
from pyfi.db.types import UTCDateTime, enum_column


class Queue(Identified, Audited, Base):
    """A named exchange that sockets and plugs deliver through.

    Every AMQP argument is optional and NULL by default: the broker applies
    none unless the user set it, so no default ever discards a message.
    """

    __tablename__ = "queues"
    __table_args__ = (
        CheckConstraint("max_length IS NULL OR max_length >= 0", name="max_length_positive"),
        CheckConstraint(
            "max_length_bytes IS NULL OR max_length_bytes >= 0", name="max_length_bytes_positive"
        ),
        CheckConstraint("message_ttl IS NULL OR message_ttl >= 0", name="message_ttl_positive"),
        CheckConstraint("expires IS NULL OR expires > 0", name="expires_positive"),
    )

    name: Mapped[unique_name]
    type: Mapped[QueueType] = mapped_column(
        enum_column(QueueType, "queue_type"), nullable=False, default=QueueType.DIRECT
    )
    durable: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    max_length: Mapped[int | None] = mapped_column(Integer)
    max_length_bytes: Mapped[int | None] = mapped_column(Integer)
    message_ttl: Mapped[int | None] = mapped_column(Integer, doc="milliseconds")
    expires: Mapped[int | None] = mapped_column(Integer, doc="milliseconds")
    network_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("networks.id", ondelete="SET NULL")
    )
    description: Mapped[str | None] = mapped_column(Text)

    # passive_deletes="all": the database's ON DELETE rule (here RESTRICT)
    # decides; the ORM must never null out a child's foreign key first.
    sockets: Mapped[list[Socket]] = relationship(back_populates="queue", passive_deletes="all")
    plugs: Mapped[list[Plug]] = relationship(back_populates="queue", passive_deletes="all")


class Processor(Identified, Audited, Base):
    """A python module from a git repository, run by workers on agents."""

    __tablename__ = "processors"
    __table_args__ = (
        CheckConstraint("concurrency >= 1", name="concurrency_positive"),
        CheckConstraint("retries >= 0", name="retries_not_negative"),
        CheckConstraint("retry_delay >= 0", name="retry_delay_not_negative"),
        CheckConstraint("timelimit IS NULL OR timelimit > 0", name="timelimit_positive"),
    )

    name: Mapped[unique_name]
    module: Mapped[str] = mapped_column(String(255), nullable=False)
    # Shown masked everywhere (pyfi.db.serialize): URLs may carry tokens.
    gitrepo: Mapped[str] = mapped_column(String(500), nullable=False, info={"masked": "url"})
    branch: Mapped[str] = mapped_column(String(255), nullable=False, default="main")
    commit: Mapped[str | None] = mapped_column(String(64))
    modulepath: Mapped[str | None] = mapped_column(String(500))
    requirements: Mapped[str | None] = mapped_column(Text, info={"masked": "text"})
    hostname: Mapped[str | None] = mapped_column(String(255), index=True)
    concurrency: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    retries: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    retry_delay: Mapped[int] = mapped_column(Integer, nullable=False, default=1, doc="seconds")
    timelimit: Mapped[int | None] = mapped_column(Integer, doc="seconds")
    beat: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    status: Mapped[ProcessorStatus] = mapped_column(
        enum_column(ProcessorStatus, "processor_status"),
        nullable=False,
        default=ProcessorStatus.READY,
    )
    # Why the status is what it is (a refused repository, a failed deploy).
    status_reason: Mapped[str | None] = mapped_column(Text, info={"masked": "text"})
    requested_status: Mapped[RequestedStatus] = mapped_column(
        enum_column(RequestedStatus, "requested_status"),
        nullable=False,
        default=RequestedStatus.RUNNING,
    )
    # Set by `flow proc restart`: agents restart workers started before it.
    restart_requested: Mapped[datetime | None] = mapped_column(UTCDateTime)
    description: Mapped[str | None] = mapped_column(Text)
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    tasks: Mapped[list[Task]] = relationship(
        back_populates="processor", cascade="all, delete-orphan", passive_deletes=True
    )
    sockets: Mapped[list[Socket]] = relationship(
        back_populates="processor",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Socket.name",
    )


class Task(Identified, Audited, Base):
    """One function of a processor's module; sockets front it, arguments describe it."""

    __tablename__ = "tasks"
    __table_args__ = (UniqueConstraint("processor_id", "name"),)

    name: Mapped[name_str]
    processor_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("processors.id", ondelete="CASCADE"), nullable=False
    )
    # Source of the function as last seen by a worker.
    source: Mapped[str | None] = mapped_column(Text)
    # When a worker (or a decorator) last recorded the function's real
    # signature; NULL means the arguments below are only what plugs named.
    inspected: Mapped[datetime | None] = mapped_column(UTCDateTime)

    processor: Mapped[Processor] = relationship(back_populates="tasks")
    arguments: Mapped[list[Argument]] = relationship(
        back_populates="task",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Argument.position",
    )
    sockets: Mapped[list[Socket]] = relationship(back_populates="task", passive_deletes="all")


class Argument(Identified, Audited, Base):
    """A named parameter of a task, which plugs can be bound to."""

    __tablename__ = "arguments"
    __table_args__ = (UniqueConstraint("task_id", "name"),)

    name: Mapped[name_str]
    # Position and kind (inspect.Parameter kind, lower case) in the function's
    # signature; NULL when only a plug named the argument.
    position: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str | None] = mapped_column(String(40))
    # True when the function has no default for it; NULL when not inspected.
    required: Mapped[bool | None] = mapped_column(Boolean)
    task_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False
    )

    task: Mapped[Task] = relationship(back_populates="arguments")


class Socket(Identified, Audited, Base):
    """An addressable endpoint for one task of a processor, fronted by a durable queue."""

    __tablename__ = "sockets"
    __table_args__ = (
        CheckConstraint("interval IS NULL OR interval > 0", name="interval_positive"),
        CheckConstraint("interval IS NULL OR cron IS NULL", name="one_schedule"),
        CheckConstraint("catch_up >= 1", name="catch_up_positive"),
    )

    name: Mapped[unique_name]
    processor_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("processors.id", ondelete="CASCADE"), nullable=False, index=True
    )
    task_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False
    )
    queue_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("queues.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    # Fire only when every plug bound to an argument has delivered (a join).
    wait: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    interval: Mapped[int | None] = mapped_column(Integer, doc="seconds between scheduled calls")
    cron: Mapped[str | None] = mapped_column(String(120))
    # The IANA time zone the cron expression is read in; NULL is UTC.
    timezone: Mapped[str | None] = mapped_column(String(64))
    # What a scheduled call passes: a JSON array (positional arguments) or
    # object (keyword arguments); NULL calls the function with none.
    input: Mapped[str | None] = mapped_column(Text)
    # The schedule's columns have server defaults only, so that an insert
    # naming none of them also works on a database migrated before them.
    misfire: Mapped[Misfire] = mapped_column(
        enum_column(Misfire, "misfire"), nullable=False, server_default=Misfire.SKIP.value
    )
    # With misfire catch-up: the most missed instants fired after an outage.
    catch_up: Mapped[int] = mapped_column(Integer, nullable=False, server_default="10")
    # A paused schedule fires nothing; resuming starts it afresh from then.
    paused: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=false())
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    description: Mapped[str | None] = mapped_column(Text)
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    processor: Mapped[Processor] = relationship(back_populates="sockets")
    task: Mapped[Task] = relationship(back_populates="sockets")
    queue: Mapped[Queue] = relationship(back_populates="sockets")
    outgoing: Mapped[list[Plug]] = relationship(
        back_populates="source",
        foreign_keys="Plug.source_id",
        passive_deletes="all",
        order_by="Plug.name",
    )
    incoming: Mapped[list[Plug]] = relationship(
        back_populates="target",
        foreign_keys="Plug.target_id",
        passive_deletes="all",
        order_by="Plug.name",
    )


class Plug(Identified, Audited, Base):
    """An edge: the source socket's result (or error) feeds the target socket."""

    __tablename__ = "plugs"

    name: Mapped[unique_name]
    type: Mapped[PlugType] = mapped_column(
        enum_column(PlugType, "plug_type"), nullable=False, default=PlugType.RESULT
    )
    source_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sockets.id", ondelete="CASCADE"), nullable=False, index=True
    )
    target_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sockets.id", ondelete="CASCADE"), nullable=False, index=True
    )
    queue_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("queues.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    # The target argument this plug delivers to; NULL passes the whole result.
    argument_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("arguments.id", ondelete="CASCADE")
    )
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    # Closes a cycle on purpose: graph validation does not count it as one.
    loop: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )
    description: Mapped[str | None] = mapped_column(Text)
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    source: Mapped[Socket] = relationship(back_populates="outgoing", foreign_keys=[source_id])
    target: Mapped[Socket] = relationship(back_populates="incoming", foreign_keys=[target_id])
    queue: Mapped[Queue] = relationship(back_populates="plugs")
    argument: Mapped[Argument | None] = relationship()
