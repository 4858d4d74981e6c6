"""The agent: register, claim shares, deploy them, supervise their workers, repeat.

The loop is driven by changes, not by a clock: after each pass the agent
waits on the change channel (PostgreSQL LISTEN/NOTIFY, or a slow poll of
SQLite) for at most one heartbeat interval, so a `flow proc stop` reaches it
within moments while an idle agent costs one small write every few seconds.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket as _socket
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select

from pyfi.agent import placement
from pyfi.agent.host import measure
from pyfi.agent.supervisor import GroupSpec, Supervisor
from pyfi.config import ENV_AGENT_PID, Settings
from pyfi.db import models
from pyfi.db.enums import AgentStatus, DeploymentStatus, ProcessorStatus, WorkerStatus
from pyfi.db.session import Database
from pyfi.errors import CodeNotAllowed, FlowError, RepoNotAllowed
from pyfi.wiring import load_processor, spec_to_json

log = logging.getLogger("pyfi.agent")

# How often the agent looks at its workers while some are draining.
DRAIN_POLL_S = 0.1


@dataclass(frozen=True)
class AgentOptions:
    """How an agent runs on its host."""

    name: str
    workdir: Path
    cpus: int | None = None
    host: str = "127.0.0.1"
    port: int = 8090
    clean: bool = False
    venv_cache: Path | None = None  # default: <workdir>/venvs


class Agent:
    """One host's agent."""

    def __init__(self, settings: Settings, options: AgentOptions) -> None:
        self.settings = settings
        self.options = options
        self.database = Database(settings.database_url)
        self.agent_id: uuid.UUID | None = None
        self.supervisor = Supervisor(
            self._worker_env(), options.workdir / "logs", describe=self._describe
        )
        self._stop = threading.Event()
        self._deployed: dict[tuple[Any, ...], Any] = {}
        self._failed: dict[str, str] = {}
        self._worker_rows: dict[int, uuid.UUID] = {}

    def stop(self, *_: Any) -> None:
        """Ask the agent to stop: workers drain, shares are released."""
        self._stop.set()

    def _worker_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYFI_")}
        env.update(
            PYFI_DB=self.settings.database_url,
            PYFI_BROKER=self.settings.broker_url,
            PYFI_BACKEND=self.settings.backend_url,
            PYFI_INI=os.devnull,  # workers get every setting from the agent, explicitly
        )
        env[ENV_AGENT_PID] = str(os.getpid())  # workers drain and exit if the agent dies
        return env

    # -- lifecycle -------------------------------------------------------
    def run(self) -> None:
        """Serve until SIGTERM/SIGINT or :meth:`stop`."""
        from pyfi.agent.health import serve
        from pyfi.db.changes import ChangeListener

        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        if self.options.clean and self.options.workdir.exists():
            # Empty it rather than remove it: it may be a mount point.
            for entry in self.options.workdir.iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        self.options.workdir.mkdir(parents=True, exist_ok=True)
        self.agent_id = self._register()
        server = serve(self.options.host, self.options.port, self.report)
        log.info(
            "agent %s online (health on %s:%d)",
            self.options.name,
            self.options.host,
            server.server_address[1],
        )
        listener = ChangeListener(self.settings.database_url, ignore_own=True)
        try:
            while not self._stop.is_set():
                self._reconcile()
                # While old workers drain (a restart, a roll-over), look again
                # soon: the workers table should show the new ones alone as
                # soon as the old ones exit, not a heartbeat later.
                listener.wait(
                    timeout_s=DRAIN_POLL_S if self.supervisor.draining else placement.HEARTBEAT_S
                )
        finally:
            listener.close()
            server.shutdown()
            log.info("agent %s stopping: draining workers", self.options.name)
            self.supervisor.stop_all()
            with self.database.transaction() as session:
                placement.release(session, self.agent_id)
                session.execute(
                    delete(models.Worker).where(models.Worker.agent_id == self.agent_id)
                )
            self.database.dispose()
            log.info("agent %s offline", self.options.name)

    def _register(self) -> uuid.UUID:
        facts = measure(self.options.workdir)
        with self.database.transaction() as session:
            node = session.scalars(
                select(models.Node).where(models.Node.name == self.options.name)
            ).one_or_none()
            if node is None:
                node = models.Node(name=self.options.name, hostname=facts.hostname)
                session.add(node)
            self._update_node(node, facts)
            agent = session.scalars(
                select(models.Agent).where(models.Agent.name == self.options.name)
            ).one_or_none()
            if agent is None:
                agent = models.Agent(name=self.options.name, hostname=facts.hostname, node=node)
                session.add(agent)
            agent.cpus = self.options.cpus or facts.cpus
            agent.port = self.options.port
            agent.pid = os.getpid()
            agent.status = AgentStatus.ONLINE
            agent.heartbeat = datetime.now(UTC)
            session.flush()
            # A previous run of this agent died: its worker rows are history.
            session.execute(delete(models.Worker).where(models.Worker.agent_id == agent.id))
            return agent.id

    def _update_node(self, node: models.Node, facts: Any) -> None:
        node.hostname = facts.hostname
        node.cpus = self.options.cpus or facts.cpus
        node.memsize, node.freemem, node.memused = facts.memsize, facts.freemem, facts.memused
        node.disksize, node.diskusage = facts.disksize, facts.diskusage
        node.cpuload = facts.cpuload

    # -- one pass --------------------------------------------------------
    def _reconcile(self) -> None:
        assert self.agent_id is not None
        with self.database.transaction() as session:
            shares = placement.place(session, self.agent_id)
            agent = session.get_one(models.Agent, self.agent_id)
            self._update_node(
                session.get_one(models.Node, agent.node_id), measure(self.options.workdir)
            )
        specs = []
        for share in shares:
            deployed = self._deploy(share)
            if deployed is not None:
                specs.append(
                    GroupSpec(
                        share.name,
                        deployed.python,
                        deployed.checkout.path,
                        deployed.checkout.commit,
                        share.workers,
                        share.paused,
                        share.restart_requested,
                    )
                )
        self.supervisor.apply(specs)
        self.supervisor.poll()
        self._record_workers(specs, self.supervisor.reap())

    def _describe(self, processor: str) -> str | None:
        """The processor's spec for a worker about to start; None to let it read the model."""
        try:
            with self.database.connect() as connection:
                return spec_to_json(load_processor(connection, processor))
        except Exception as exc:  # the worker can still read it itself
            log.warning("could not read the spec of %s for its worker: %s", processor, exc)
            return None

    def _deploy(self, share: placement.Share) -> Any:
        """The processor's interpreter and commit, deploying it when needed."""
        from pyfi.agent.deploy import deploy

        tasks = self._tasks(share)
        key = (share.gitrepo, share.branch, share.commit, share.requirements, share.module, tasks)
        if key in self._deployed:
            return self._deployed[key]
        self._set_status(share, ProcessorStatus.DEPLOYING, None, DeploymentStatus.DEPLOYING)
        try:
            result = deploy(
                url=share.gitrepo,
                branch=share.branch,
                commit=share.commit,
                requirements=share.requirements,
                workdir=self.options.workdir / "processors" / share.name,
                cache_root=self.options.venv_cache or self.options.workdir / "venvs",
                allowed=self.settings.allowed_repos,
                module=share.module,
                tasks=tasks,
                indexes=self.settings.allowed_indexes,
            )
        except FlowError as exc:
            log.warning("cannot deploy %s: %s", share.name, exc.message)
            self._failed[share.name] = exc.message
            refused = isinstance(exc, RepoNotAllowed | CodeNotAllowed)
            self._set_status(
                share,
                ProcessorStatus.REFUSED if refused else ProcessorStatus.FAILED,
                exc.message,
                DeploymentStatus.FAILED,
            )
            return None
        self._deployed[key] = result
        self._failed.pop(share.name, None)
        self._set_status(
            share,
            ProcessorStatus.RUNNING,
            None,
            DeploymentStatus.DEPLOYED,
            commit=result.checkout.commit,
        )
        return result

    def _tasks(self, share: placement.Share) -> tuple[str, ...]:
        """The tasks of the processor's enabled sockets, checked with its module at deploy."""
        with self.database.connect() as connection:
            spec = load_processor(connection, share.name)
        return tuple(sorted({socket.task for socket in spec.sockets}))

    def _set_status(
        self,
        share: placement.Share,
        status: ProcessorStatus,
        reason: str | None,
        deployment_status: DeploymentStatus,
        commit: str | None = None,
    ) -> None:
        with self.database.transaction() as session:
            processor = session.get(models.Processor, share.processor_id)
            if processor is None:
                return
            if share.paused and status is ProcessorStatus.RUNNING:
                status = ProcessorStatus.PAUSED
            processor.status = status
            processor.status_reason = reason
            deployment = session.scalars(
                select(models.Deployment).where(
                    models.Deployment.processor_id == share.processor_id,
                    models.Deployment.agent_id == self.agent_id,
                )
            ).one_or_none()
            if deployment is not None:
                deployment.status = deployment_status
                deployment.status_reason = reason
                deployment.commit = commit or deployment.commit

    def _record_workers(self, specs: list[GroupSpec], died: list[tuple[str, int, int]]) -> None:
        running = self.supervisor.pids()
        with self.database.transaction() as session:
            for _name, pid, code in died:
                row_id = self._worker_rows.pop(pid, None)
                worker = session.get(models.Worker, row_id) if row_id else None
                if worker is not None:
                    worker.status = WorkerStatus.STOPPED if code == 0 else WorkerStatus.CRASHED
                    worker.pid = None
            processors = {
                p.name: p.id
                for p in session.scalars(
                    select(models.Processor).where(models.Processor.name.in_(list(running)))
                )
            }
            for name, pids in running.items():
                paused = any(s.processor == name and s.paused for s in specs)
                status = WorkerStatus.PAUSED if paused else WorkerStatus.RUNNING
                for pid in pids:
                    if pid in self._worker_rows:
                        existing = session.get(models.Worker, self._worker_rows[pid])
                        if existing is not None and existing.status is not status:
                            existing.status = status
                        continue
                    if name not in processors:
                        continue
                    worker = models.Worker(
                        name=f"{self.options.name}:{name}:{pid}",
                        hostname=_socket.gethostname(),
                        pid=pid,
                        workdir=str(self.options.workdir / "processors" / name),
                        concurrency=1,
                        status=status,
                        started=datetime.now(UTC),
                        processor_id=processors[name],
                        agent_id=self.agent_id,
                    )
                    session.add(worker)
                    session.flush()
                    self._worker_rows[pid] = worker.id

    # -- health ----------------------------------------------------------
    def report(self) -> dict[str, Any]:
        """What the health endpoint returns."""
        return {
            "agent": self.options.name,
            "status": "stopping" if self._stop.is_set() else "online",
            "pid": os.getpid(),
            "workers": self.supervisor.pids(),
            "failed": dict(self._failed),
        }
