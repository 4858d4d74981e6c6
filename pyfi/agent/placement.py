"""Which processors run on this agent, and with how many workers: decided atomically.

Every agent runs the same placement step, each in one transaction that first
takes a lock shared by all agents (a PostgreSQL advisory lock; on SQLite the
database's single writer lock, taken by the step's first write). So two agents
never decide at the same moment, and between them never run more workers of
a processor than its concurrency.

* A processor with a ``hostname`` runs only on the agent of that name (or
  host): ``min(concurrency, cpus)`` workers there.
* Any other processor is shared: each agent claims what the processor still
  needs, up to its own free CPUs. Shares of agents whose heartbeat is stale
  are released, so a dead host's work moves to the living.

A :class:`~pyfi.db.models.Deployment` row records each share. A share whose
code is still being deployed is held like any other: deploys run off the
agent's loop (see :mod:`pyfi.agent.deployer`), so its heartbeat goes on and
nobody takes the share over meanwhile.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from pyfi.db import models
from pyfi.db.enums import AgentStatus, DeploymentStatus, RequestedStatus

HEARTBEAT_S = 3.0
STALE_AFTER_S = 15.0
ADVISORY_LOCK_KEY = 0x50_59_46_49  # "PYFI"

WANTED = (RequestedStatus.RUNNING, RequestedStatus.PAUSED)


@dataclass(frozen=True)
class Share:
    """What this agent must run of one processor."""

    processor_id: uuid.UUID
    name: str
    module: str
    gitrepo: str
    branch: str
    commit: str | None
    requirements: str | None
    workers: int
    paused: bool
    restart_requested: datetime | None


def is_stale(heartbeat: datetime | None, now: datetime) -> bool:
    """True when an agent has not reported for too long to count as alive."""
    return heartbeat is None or now - heartbeat > timedelta(seconds=STALE_AFTER_S)


def _lock(session: Session, agent: models.Agent, now: datetime) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
    # The heartbeat write comes first: on SQLite it takes the writer lock for
    # the rest of the transaction, which serialises placement across agents.
    agent.heartbeat = now
    agent.status = AgentStatus.ONLINE
    session.flush()


def _pinned_here(processor: models.Processor, agent: models.Agent) -> bool:
    return processor.hostname in (agent.name, agent.hostname)


def place(session: Session, agent_id: uuid.UUID) -> list[Share]:
    """Claim this agent's shares and return them (call inside one transaction)."""
    now = datetime.now(UTC)
    agent = session.get_one(models.Agent, agent_id)
    _lock(session, agent, now)
    processors = {
        p.id: p
        for p in session.scalars(
            select(models.Processor).where(
                models.Processor.enabled.is_(True),
                models.Processor.requested_status.in_(WANTED),
            )
        )
    }
    deployments = list(session.scalars(select(models.Deployment)))
    agents = {a.id: a for a in session.scalars(select(models.Agent))}
    live: list[models.Deployment] = []
    for deployment in deployments:
        owner = agents.get(deployment.agent_id)
        if owner is None or (owner.id != agent.id and is_stale(owner.heartbeat, now)):
            session.delete(deployment)  # a dead agent's share is free again
        else:
            live.append(deployment)
    mine = {d.processor_id: d for d in live if d.agent_id == agent.id}
    for processor_id, deployment in list(mine.items()):
        if processor_id not in processors:
            session.delete(deployment)  # stopped, removed, disabled or deleted
            del mine[processor_id]
    capacity = agent.cpus or 1
    free = capacity - sum(d.cpus for d in mine.values())
    shares: list[Share] = []
    for processor in sorted(processors.values(), key=lambda p: p.name):
        current = mine[processor.id].cpus if processor.id in mine else 0
        if processor.hostname:
            want = min(processor.concurrency, capacity) if _pinned_here(processor, agent) else 0
        else:
            others = sum(
                d.cpus for d in live if d.processor_id == processor.id and d.agent_id != agent.id
            )
            want = max(0, min(processor.concurrency - others, current + free))
        free -= want - current
        shares.extend(_record(session, agent, processor, mine.get(processor.id), want))
    session.flush()
    return shares


def _record(
    session: Session,
    agent: models.Agent,
    processor: models.Processor,
    deployment: models.Deployment | None,
    want: int,
) -> list[Share]:
    if want <= 0:
        if deployment is not None:
            session.delete(deployment)
        return []
    if deployment is None:
        deployment = models.Deployment(
            name=f"{processor.name}@{agent.name}",
            hostname=agent.hostname,
            processor_id=processor.id,
            agent_id=agent.id,
            status=DeploymentStatus.PENDING,
        )
        session.add(deployment)
    deployment.cpus = want
    return [
        Share(
            processor_id=processor.id,
            name=processor.name,
            module=processor.module,
            gitrepo=processor.gitrepo,
            branch=processor.branch,
            commit=processor.commit,
            requirements=processor.requirements,
            workers=want,
            paused=processor.requested_status is RequestedStatus.PAUSED,
            restart_requested=processor.restart_requested,
        )
    ]


def release(session: Session, agent_id: uuid.UUID) -> None:
    """On a clean stop: give up every share and say so."""
    agent = session.get(models.Agent, agent_id)
    if agent is None:
        return
    for deployment in session.scalars(
        select(models.Deployment).where(models.Deployment.agent_id == agent_id)
    ):
        session.delete(deployment)
    agent.status = AgentStatus.OFFLINE
