"""The agent: register, claim shares, deploy them, supervise their workers, repeat.

The loop is driven by changes, not by a clock: after each pass the agent
waits on the change channel (PostgreSQL LISTEN/NOTIFY, or a slow poll of
SQLite) for at most one heartbeat interval, so a `flow proc stop` reaches it
within moments while an idle agent costs one small write every few seconds.

Faults stay where they happen:

* Deploys run on threads of their own (:mod:`pyfi.agent.deployer`): the
  loop keeps heartbeating, which keeps the shares of a deploying processor
  held, and keeps serving the others. A failed deploy fails its processor.
* A watcher thread polls the workers several times a second, so a dead one
  is replaced within moments, whatever the loop is waiting on.
* When the database is away, workers keep running (they need no database to
  consume); the loop retries with a backoff (:mod:`pyfi.agent.outage`), the
  change listener reconnects by itself, and the first pass after the
  outage catches up with whatever changed meanwhile.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import signal
import socket as _socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import delete, select

from pyfi.agent import placement
from pyfi.agent.deployer import Deployed, Deployer, Deploying, Key, failure_reason
from pyfi.agent.host import measure
from pyfi.agent.outage import Outage
from pyfi.agent.supervisor import DEFAULT_DRAIN_GRACE_S, Exit, GroupSpec, Supervisor
from pyfi.auth.actor import Actor, ActorKind
from pyfi.config import ENV_AGENT_PID, Settings
from pyfi.db import models
from pyfi.db.enums import AgentStatus, DeploymentStatus, ProcessorStatus, WorkerStatus
from pyfi.db.session import Database
from pyfi.errors import DeployError, FlowError, UserError, first_line
from pyfi.masking import mask_urls_in
from pyfi.scheduler.service import SchedulerThread
from pyfi.wiring import load_processor, spec_to_json

log = logging.getLogger("pyfi.agent")

# How often the agent looks at its workers while some are draining.
DRAIN_POLL_S = 0.1
# How often the watcher thread looks for dead workers.
WATCH_S = 0.2
# How often the loop looks for finished deploys while some run.
DEPLOY_POLL_S = 0.5

T = TypeVar("T")
# What the agent last wrote about a processor: status, reason, deployment status, commit.
Reported = tuple[ProcessorStatus, str | None, DeploymentStatus, str | None]


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
    drain_grace_s: float = DEFAULT_DRAIN_GRACE_S


class Agent:
    """One host's agent."""

    def __init__(self, settings: Settings, options: AgentOptions) -> None:
        self.settings = settings
        self.options = options
        self.database = Database(settings.database_url)
        # The agent's own bookkeeping is a service's, never a user's
        # (`flow agent start` checked START_AGENT before building it).
        self.database.act_as(Actor(f"agent {options.name}", ActorKind.SERVICE, via="service"))
        self.agent_id: uuid.UUID | None = None
        self.supervisor = Supervisor(
            self._worker_env(),
            options.workdir / "logs",
            describe=self._describe,
            drain_grace_s=options.drain_grace_s,
        )
        self.deployer: Deployer[Any] = Deployer(self._deploy_code)
        self.outage = Outage("database")
        self._stop = threading.Event()
        self._failed: dict[str, str] = {}
        self._reported: dict[uuid.UUID, Reported] = {}
        self._exits: list[Exit] = []
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
        self.agent_id = self._until_done(self._register)
        listener = self._until_done(
            lambda: ChangeListener(self.settings.database_url, ignore_own=True)
        )
        if self.agent_id is None or listener is None:  # stopped before the database answered
            return
        server = serve(self.options.host, self.options.port, self.report)
        log.info(
            "agent %s online (health on %s:%d)",
            self.options.name,
            self.options.host,
            server.server_address[1],
        )
        watcher = threading.Thread(target=self._watch, name="pyfi-watch", daemon=True)
        watcher.start()
        scheduler = SchedulerThread(self.settings, self.options.name)
        scheduler.start()  # fires periodic sockets while this agent leads
        try:
            while not self._stop.is_set():
                retry_in = self._pass()
                self._wait(listener, retry_in)
        finally:
            self._stop.set()  # the watcher too, whatever ended the loop
            watcher.join()
            scheduler.stop()
            listener.close()
            server.shutdown()
            log.info("agent %s stopping: draining workers", self.options.name)
            self.supervisor.stop_all()
            self._release()
            self.database.dispose()
            log.info("agent %s offline", self.options.name)

    def _until_done(self, attempt: Callable[[], T]) -> T | None:
        """``attempt()``, retried while the database is away; None if stopped meanwhile.

        A wrong setting (a database that is not initialised, a URL of no
        known kind) is not an outage: it ends the agent with its one line.
        """
        while not self._stop.is_set():
            try:
                done = attempt()
            except UserError:
                raise
            except Exception as exc:
                self._stop.wait(self.outage.failed(exc))
                continue
            self.outage.recovered()
            return done
        return None

    def _pass(self) -> float | None:
        """One reconcile; on failure, how long to wait before the next."""
        try:
            self._reconcile()
        except Exception as exc:  # the database is away (or a bug): the workers go on
            return self.outage.failed(exc)
        if self.outage.recovered():
            self._reported.clear()  # write every status again: others may have changed them
        return None

    def _wait(self, listener: Any, retry_in: float | None) -> None:
        """Until a change, a retry, or the next heartbeat, whichever comes first."""
        timeout = placement.HEARTBEAT_S
        if retry_in is not None:
            timeout = retry_in
        elif self.supervisor.draining:
            # While old workers drain (a restart, a roll-over), look again
            # soon: the workers table should show the new ones alone as
            # soon as the old ones exit, not a heartbeat later.
            timeout = DRAIN_POLL_S
        elif self.deployer.deploying():
            timeout = DEPLOY_POLL_S  # start the workers of a finished deploy at once
        try:
            listener.wait(timeout_s=timeout)
        except Exception as exc:  # SQLite: the file cannot be read; PostgreSQL reconnects
            self.outage.failed(exc)
            self._stop.wait(timeout)

    def _watch(self) -> None:
        """Replace dead workers and end overdue drains, whatever the loop is doing."""
        while not self._stop.wait(WATCH_S):
            try:
                self.supervisor.poll()
            except Exception:  # the watcher must outlive any one bad poll
                log.exception("watching the workers failed")

    def _release(self) -> None:
        """Give up this agent's shares and worker rows, if the database lets us."""
        assert self.agent_id is not None
        try:
            with self.database.transaction() as session:
                placement.release(session, self.agent_id)
                session.execute(
                    delete(models.Worker).where(models.Worker.agent_id == self.agent_id)
                )
        except Exception as exc:
            log.warning(
                "could not release this agent's shares (%s); other agents take them over "
                "once its heartbeat is stale",
                failure_reason(exc),
            )

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
        self.deployer.forget({share.name for share in shares})
        placed = {share.processor_id for share in shares}
        for processor_id in list(self._reported):
            if processor_id not in placed:  # placed again later: say so again
                del self._reported[processor_id]
        specs: list[GroupSpec] = []
        reports: dict[uuid.UUID, tuple[placement.Share, Reported]] = {}
        failed: dict[str, str] = {}
        for share in shares:
            key: Key = (
                share.gitrepo,
                share.branch,
                share.commit,
                share.requirements,
                share.module,
                self._tasks(share),
            )
            state = self.deployer.state(share.name, key)
            if isinstance(state, Deployed):
                deployed = state.result
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
                status = ProcessorStatus.PAUSED if share.paused else ProcessorStatus.RUNNING
                report: Reported = (
                    status,
                    None,
                    DeploymentStatus.DEPLOYED,
                    deployed.checkout.commit,
                )
            elif isinstance(state, Deploying):
                current = self.supervisor.spec(share.name)
                if current is not None:  # the old code serves until the new is ready
                    specs.append(
                        dataclasses.replace(current, workers=share.workers, paused=share.paused)
                    )
                report = (ProcessorStatus.DEPLOYING, None, DeploymentStatus.DEPLOYING, None)
            else:
                failed[share.name] = state.reason
                status = ProcessorStatus.REFUSED if state.refused else ProcessorStatus.FAILED
                report = (status, state.reason, DeploymentStatus.FAILED, None)
            reports[share.processor_id] = (share, report)
        self._failed = failed
        self.supervisor.apply(specs)
        self._report(reports)
        self._record_workers(specs)

    def _describe(self, processor: str) -> str | None:
        """The processor's spec for a worker about to start; None to let it read the model."""
        try:
            with self.database.connect() as connection:
                return spec_to_json(load_processor(connection, processor))
        except Exception as exc:  # the last spec written serves, or the worker reads it itself
            log.warning(
                "could not read the spec of %s for its worker: %s", processor, first_line(exc)
            )
            return None

    def _deploy_code(self, name: str, key: Key) -> Any:
        """Deploy one processor's code (on a deploy thread); any failure is a one-line error."""
        from pyfi.agent.deploy import deploy

        url, branch, commit, requirements, module, tasks = key
        try:
            return deploy(
                url=url,
                branch=branch,
                commit=commit,
                requirements=requirements,
                workdir=self.options.workdir / "processors" / name,
                cache_root=self.options.venv_cache or self.options.workdir / "venvs",
                allowed=self.settings.allowed_repos,
                module=module,
                tasks=tasks,
                indexes=self.settings.allowed_indexes,
            )
        except FlowError:
            raise
        except Exception as exc:
            log.debug("deploy of %s raised", name, exc_info=True)
            raise DeployError(mask_urls_in(failure_reason(exc))) from exc

    def _tasks(self, share: placement.Share) -> tuple[str, ...]:
        """The tasks of the processor's enabled sockets, checked with its module at deploy."""
        with self.database.connect() as connection:
            spec = load_processor(connection, share.name)
        return tuple(sorted({socket.task for socket in spec.sockets}))

    def _report(self, reports: dict[uuid.UUID, tuple[placement.Share, Reported]]) -> None:
        """Write the status of each processor whose status changed since the last write."""
        changed = {
            processor_id: (share, report)
            for processor_id, (share, report) in reports.items()
            if self._reported.get(processor_id) != report
        }
        if not changed:
            return
        with self.database.transaction() as session:
            for processor_id, (_share, report) in changed.items():
                status, reason, deployment_status, commit = report
                processor = session.get(models.Processor, processor_id)
                if processor is None:
                    continue
                processor.status = status
                processor.status_reason = reason
                deployment = session.scalars(
                    select(models.Deployment).where(
                        models.Deployment.processor_id == processor_id,
                        models.Deployment.agent_id == self.agent_id,
                    )
                ).one_or_none()
                if deployment is not None:
                    deployment.status = deployment_status
                    deployment.status_reason = reason
                    deployment.commit = commit or deployment.commit
        for processor_id, (_share, report) in changed.items():
            self._reported[processor_id] = report

    def _record_workers(self, specs: list[GroupSpec]) -> None:
        # Exits seen during an outage wait here until they are written.
        self._exits += self.supervisor.reap()
        running = self.supervisor.pids()
        with self.database.transaction() as session:
            for ended in self._exits:
                row_id = self._worker_rows.get(ended.pid)
                worker = session.get(models.Worker, row_id) if row_id else None
                if worker is not None:
                    crashed = ended.code != 0
                    worker.status = WorkerStatus.CRASHED if crashed else WorkerStatus.STOPPED
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
        for ended in self._exits:
            self._worker_rows.pop(ended.pid, None)
        self._exits = []

    # -- health ----------------------------------------------------------
    def report(self) -> dict[str, Any]:
        """What the health endpoint returns."""
        return {
            "agent": self.options.name,
            "status": "stopping" if self._stop.is_set() else "online",
            "pid": os.getpid(),
            "workers": self.supervisor.pids(),
            "consuming": self.supervisor.pids(consuming=True),
            "deploying": self.deployer.deploying(),
            "failed": dict(self._failed),
            "database": "unreachable" if self.outage.down else "ok",
        }
