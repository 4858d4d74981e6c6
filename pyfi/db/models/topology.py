"""Where things run: networks, schedulers, nodes, agents, deployments and workers."""

from __future__ import annotations

import uuid

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from pyfi.db.base import Audited, Base, Identified, name_str, optional_timestamp, unique_name
from pyfi.db.enums import AgentStatus, DeploymentStatus, Strategy, WorkerStatus
from pyfi.db.types import enum_column


class Network(Identified, Audited, Base):
    """A named group of nodes, queues and schedulers."""

    __tablename__ = "networks"

    name: Mapped[unique_name]
    description: Mapped[str | None] = mapped_column(Text)


class Scheduler(Identified, Audited, Base):
    """Places work on the nodes of a network by a strategy."""

    __tablename__ = "schedulers"

    name: Mapped[unique_name]
    strategy: Mapped[Strategy] = mapped_column(
        enum_column(Strategy, "strategy"), nullable=False, default=Strategy.BALANCED
    )
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    network_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("networks.id", ondelete="SET NULL")
    )
    description: Mapped[str | None] = mapped_column(Text)

    network: Mapped[Network | None] = relationship()
    nodes: Mapped[list[Node]] = relationship(back_populates="scheduler")


class Node(Identified, Audited, Base):
    """A host, with the resources its agent last measured."""

    __tablename__ = "nodes"

    name: Mapped[unique_name]
    hostname: Mapped[str] = mapped_column(String(255), nullable=False, index=True)
    cpus: Mapped[int | None] = mapped_column(Integer)
    memsize: Mapped[int | None] = mapped_column(BigInteger, doc="bytes")
    freemem: Mapped[int | None] = mapped_column(BigInteger, doc="bytes")
    memused: Mapped[float | None] = mapped_column(Float, doc="percent")
    disksize: Mapped[int | None] = mapped_column(BigInteger, doc="bytes")
    diskusage: Mapped[float | None] = mapped_column(Float, doc="percent")
    cpuload: Mapped[float | None] = mapped_column(Float, doc="load average over 1 minute")
    scheduler_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("schedulers.id", ondelete="SET NULL")
    )
    network_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("networks.id", ondelete="SET NULL")
    )

    scheduler: Mapped[Scheduler | None] = relationship(back_populates="nodes")
    # The database cascades node -> agent -> workers; the ORM leaves it to it.
    agent: Mapped[Agent | None] = relationship(back_populates="node", passive_deletes="all")


class Agent(Identified, Audited, Base):
    """The daemon on a node that makes the meta-model real there."""

    __tablename__ = "agents"

    name: Mapped[unique_name]
    hostname: Mapped[str] = mapped_column(String(255), nullable=False)
    cpus: Mapped[int | None] = mapped_column(Integer)
    port: Mapped[int | None] = mapped_column(Integer)
    pid: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[AgentStatus] = mapped_column(
        enum_column(AgentStatus, "agent_status"), nullable=False, default=AgentStatus.STARTING
    )
    heartbeat: Mapped[optional_timestamp]
    node_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("nodes.id", ondelete="CASCADE"), nullable=False, unique=True
    )

    node: Mapped[Node] = relationship(back_populates="agent")
    workers: Mapped[list[Worker]] = relationship(back_populates="agent", passive_deletes="all")


class Deployment(Identified, Audited, Base):
    """One share of a processor placed on one agent: how many CPUs, at which commit."""

    __tablename__ = "deployments"
    __table_args__ = (UniqueConstraint("processor_id", "agent_id"),)

    name: Mapped[name_str]
    hostname: Mapped[str] = mapped_column(String(255), nullable=False)
    cpus: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    commit: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[DeploymentStatus] = mapped_column(
        enum_column(DeploymentStatus, "deployment_status"),
        nullable=False,
        default=DeploymentStatus.PENDING,
    )
    status_reason: Mapped[str | None] = mapped_column(Text, info={"masked": "text"})
    processor_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("processors.id", ondelete="CASCADE"), nullable=False, index=True
    )
    agent_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), nullable=False, index=True
    )


class Worker(Identified, Audited, Base):
    """One worker process consuming a processor's sockets."""

    __tablename__ = "workers"

    name: Mapped[unique_name]
    hostname: Mapped[str] = mapped_column(String(255), nullable=False)
    pid: Mapped[int | None] = mapped_column(Integer)
    workdir: Mapped[str | None] = mapped_column(String(1024))
    concurrency: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    status: Mapped[WorkerStatus] = mapped_column(
        enum_column(WorkerStatus, "worker_status"), nullable=False, default=WorkerStatus.STARTING
    )
    started: Mapped[optional_timestamp]
    heartbeat: Mapped[optional_timestamp]
    processor_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("processors.id", ondelete="CASCADE"), nullable=False, index=True
    )
    agent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), index=True
    )
    deployment_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("deployments.id", ondelete="SET NULL")
    )

    agent: Mapped[Agent | None] = relationship(back_populates="workers")
