"""Worker processes of one agent: start, watch, replace, pause, drain.

Each processor share is a *group* of ``flow worker start`` processes run with
the processor's own interpreter. A group is identified by what its code is
(the deployed commit and interpreter) and when it was last asked to restart;
when either changes, the supervisor starts a new group and drains the old one,
so a code change rolls over without losing a message. Pause and resume are
SIGUSR1 and SIGUSR2: the workers stop and restart consuming; nothing is
frozen mid-call.

Replacing dead workers
    A worker that dies while consuming (killed, out of memory, a lost broker)
    is replaced at the next :meth:`Supervisor.poll`, at once: its calls are
    redelivered to the others and to its replacement, and every second
    without it is a second of lost capacity. Only a worker that dies *before*
    it consumed is a crash loop (a broken import, a missing dependency, a
    service it cannot reach at start), and only those wait, with a backoff
    that grows per consecutive such death and resets once a worker of the
    slot consumes. A worker says it consumes by creating the file named in
    its ``PYFI_READY_FILE`` variable (see ``flow worker start``); one alive
    for :data:`ASSUME_READY_S` without saying so counts as consuming too.

Draining
    A worker that must go (a roll-over, a stop, fewer workers wanted) gets
    SIGTERM: it finishes and acks its calls in flight, then exits. If it is
    still running ``drain_grace_s`` later (a call stuck in C code, a hung
    connection), its whole process group gets SIGKILL; its unacked calls go
    back to the queue. Every exit is logged with its cause.

The supervisor is used from two threads (the agent's reconcile loop applies
specs, a watcher polls), so every public method holds one lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pyfi.config import ENV_READY_FILE

log = logging.getLogger("pyfi.agent")

# Waits before restarting a worker that died before it consumed, by how many
# times in a row that happened.
CRASH_BACKOFF_S = (1.0, 2.0, 5.0, 10.0)
# A worker running this long counts as consuming even if it never said so.
ASSUME_READY_S = 60.0
DEFAULT_DRAIN_GRACE_S = 60.0


@dataclass(frozen=True)
class GroupSpec:
    """What a processor's workers on this host should be."""

    processor: str
    python: Path
    checkout: Path
    commit: str
    workers: int
    paused: bool
    restart_requested: datetime | None

    @property
    def identity(self) -> tuple[str, str, datetime | None]:
        """Changes of any of these need new processes, not a signal."""
        return (str(self.python), self.commit, self.restart_requested)


@dataclass
class Slot:
    """One worker process and its restart history."""

    process: subprocess.Popen[bytes] | None = None
    ready_file: Path | None = None
    ready: bool = False
    crashes: int = 0  # consecutive deaths before consuming
    next_start: float = 0.0
    started: float = 0.0


@dataclass
class Group:
    """The processes currently running one :class:`GroupSpec`."""

    spec: GroupSpec
    slots: list[Slot] = field(default_factory=list)
    paused: bool = False


@dataclass
class _Draining:
    """A worker told to stop: when it is killed if it does not, and why it stops."""

    processor: str
    process: subprocess.Popen[bytes]
    cause: str
    kill_at: float
    killed: bool = False


@dataclass(frozen=True)
class Exit:
    """A worker process that ended: the agent records it."""

    processor: str
    pid: int
    code: int
    expected: bool  # told to stop (drained), rather than died


def describe_exit(code: int) -> str:
    """A process's exit status as people read it: "exit code 1", "signal SIGKILL"."""
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


class Supervisor:
    """Keeps each processor's worker processes as the agent's placement says."""

    def __init__(
        self,
        env: dict[str, str],
        logdir: Path,
        describe: Callable[[str], str | None] | None = None,
        drain_grace_s: float = DEFAULT_DRAIN_GRACE_S,
    ) -> None:
        """Supervise workers that log into ``logdir``.

        ``describe(processor)`` returns the processor's spec as JSON (or None);
        each worker started is handed the spec current at its start, so it
        consumes without reading the model first. ``drain_grace_s`` bounds how
        long a worker told to stop may take before it is killed.
        """
        self.env = env
        self.logdir = logdir
        self.describe = describe
        self.drain_grace_s = drain_grace_s
        self.groups: dict[str, Group] = {}
        self._draining: list[_Draining] = []
        self._exits: list[Exit] = []
        self._lock = threading.RLock()

    # -- desired state ---------------------------------------------------
    def apply(self, specs: list[GroupSpec]) -> None:
        """Make the running groups match ``specs`` (others are drained and removed)."""
        with self._lock:
            wanted = {spec.processor: spec for spec in specs}
            for name in list(self.groups):
                if name not in wanted:
                    self._drain_group(self.groups.pop(name), "no longer placed here")
            for name, spec in wanted.items():
                group = self.groups.get(name)
                if group is not None and group.spec.identity != spec.identity:
                    if group.spec.commit != spec.commit:
                        cause = f"rolled over to commit {spec.commit[:12]}"
                    else:
                        cause = "restart requested"
                    log.info("%s: %s", name, cause)
                    self._drain_group(self.groups.pop(name), cause)
                    group = None
                if group is None:
                    group = self.groups[name] = Group(spec)
                group.spec = spec
                self._resize(group)
                self._set_paused(group, spec.paused)
            self.poll()

    def spec(self, processor: str) -> GroupSpec | None:
        """What the workers of ``processor`` currently run, if any run here."""
        with self._lock:
            group = self.groups.get(processor)
            return group.spec if group is not None else None

    def _resize(self, group: Group) -> None:
        while len(group.slots) > group.spec.workers:
            slot = group.slots.pop()
            if slot.process is not None:
                self._drain(group.spec.processor, slot, "fewer workers wanted")
        while len(group.slots) < group.spec.workers:
            group.slots.append(Slot())

    def _set_paused(self, group: Group, paused: bool) -> None:
        if group.paused == paused:
            return
        group.paused = paused
        for slot in group.slots:
            # A starting worker is told once it consumes (see _watch_ready):
            # before that it may not have its handlers yet.
            if slot.ready and slot.process is not None and slot.process.poll() is None:
                slot.process.send_signal(signal.SIGUSR1 if paused else signal.SIGUSR2)

    # -- watching --------------------------------------------------------
    def reap(self) -> list[Exit]:
        """Each worker that exited since the last reap."""
        with self._lock:
            exits, self._exits = self._exits, []
            return exits

    def poll(self) -> None:
        """Replace dead workers, start missing ones, end drains that ran out of time."""
        with self._lock:
            now = time.monotonic()
            for name, group in self.groups.items():
                for slot in group.slots:
                    self._watch(name, group, slot, now)
            self._watch_draining(now)

    def _watch(self, name: str, group: Group, slot: Slot, now: float) -> None:
        process = slot.process
        if process is not None:
            code = process.poll()
            if code is None:
                self._watch_ready(group, slot, now)
                return
            self._exits.append(Exit(name, process.pid, code, expected=False))
            if slot.ready:
                slot.crashes = 0
                slot.next_start = now
                log.warning(
                    "worker %d of %s died (%s); replacing it",
                    process.pid,
                    name,
                    describe_exit(code),
                )
            else:
                self._crashed(name, slot, now, f"died before consuming ({describe_exit(code)})")
            self._forget(slot)
        if now < slot.next_start:
            return
        try:
            slot.process, slot.ready_file = self._start(group.spec)
        except Exception as exc:  # a deleted venv, a full disk: a crash, not the agent's end
            self._crashed(name, slot, now, f"could not be started ({type(exc).__name__}: {exc})")
            return
        slot.started = now

    def _crashed(self, name: str, slot: Slot, now: float, what: str) -> None:
        delay = CRASH_BACKOFF_S[min(slot.crashes, len(CRASH_BACKOFF_S) - 1)]
        slot.crashes += 1
        slot.next_start = now + delay
        pid = slot.process.pid if slot.process is not None else None
        log.warning(
            "worker %sof %s %s; crash %d in a row, next start in %.0fs",
            f"{pid} " if pid is not None else "",
            name,
            what,
            slot.crashes,
            delay,
        )

    def _watch_ready(self, group: Group, slot: Slot, now: float) -> None:
        if slot.ready or slot.process is None:
            return
        said = slot.ready_file is not None and slot.ready_file.exists()
        if not said and now - slot.started < ASSUME_READY_S:
            return
        slot.ready = True
        slot.crashes = 0
        log.info("worker %d of %s consuming", slot.process.pid, group.spec.processor)
        if slot.ready_file is not None:
            slot.ready_file.unlink(missing_ok=True)
        if group.paused:
            slot.process.send_signal(signal.SIGUSR1)

    def _forget(self, slot: Slot) -> None:
        if slot.ready_file is not None:
            slot.ready_file.unlink(missing_ok=True)
        slot.process, slot.ready_file, slot.ready = None, None, False

    def _watch_draining(self, now: float) -> None:
        still_draining = []
        for item in self._draining:
            code = item.process.poll()
            if code is None:
                if now >= item.kill_at and not item.killed:
                    item.killed = True
                    log.warning(
                        "worker %d of %s did not drain within %.0fs (%s); killing it",
                        item.process.pid,
                        item.processor,
                        self.drain_grace_s,
                        item.cause,
                    )
                    _kill_group(item.process)
                still_draining.append(item)
                continue
            log.info(
                "worker %d of %s stopped (%s): %s",
                item.process.pid,
                item.processor,
                item.cause,
                describe_exit(code),
            )
            self._exits.append(Exit(item.processor, item.process.pid, code, expected=True))
        self._draining = still_draining

    @property
    def draining(self) -> bool:
        """Whether workers told to stop are still finishing their calls."""
        with self._lock:
            return bool(self._draining)

    def pids(self, *, consuming: bool = False) -> dict[str, list[int]]:
        """Running worker pids by processor (only those consuming, if asked)."""
        with self._lock:
            return {
                name: [
                    s.process.pid
                    for s in group.slots
                    if s.process and s.process.poll() is None and (s.ready or not consuming)
                ]
                for name, group in self.groups.items()
            }

    def _start(self, spec: GroupSpec) -> tuple[subprocess.Popen[bytes], Path]:
        self.logdir.mkdir(parents=True, exist_ok=True)
        log_path = self.logdir / f"{spec.processor}.log"
        ready_file = self.logdir / f".{spec.processor}.{uuid.uuid4().hex[:12]}.ready"
        command = [
            str(spec.python),
            "-m",
            "pyfi.cli",
            "worker",
            "start",
            "--processor",
            spec.processor,
            "--concurrency",
            "1",
            "--path",
            str(spec.checkout),
        ]
        spec_path = self.logdir / f"{spec.processor}.spec.json"
        described = self.describe(spec.processor) if self.describe is not None else None
        if described is not None:
            partial = spec_path.with_suffix(".partial")
            partial.write_text(described)
            partial.replace(spec_path)  # a starting worker never reads half a file
        if described is not None or spec_path.is_file():
            # Without a fresh description (the database is away), the last one
            # lets a replacement start anyway: workers need no database to consume.
            command += ["--spec", str(spec_path)]
        with log_path.open("ab") as output:  # the child keeps its own descriptor
            process = subprocess.Popen(
                command,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**self.env, ENV_READY_FILE: str(ready_file)},
                start_new_session=True,  # a Ctrl-C to the agent is the agent's to relay
            )
        log.info("started worker %d of %s", process.pid, spec.processor)
        return process, ready_file

    # -- stopping --------------------------------------------------------
    def _drain(self, processor: str, slot: Slot, cause: str) -> None:
        process = slot.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        if slot.ready_file is not None:
            slot.ready_file.unlink(missing_ok=True)
        kill_at = time.monotonic() + self.drain_grace_s
        self._draining.append(_Draining(processor, process, cause, kill_at))

    def _drain_group(self, group: Group, cause: str) -> None:
        for slot in group.slots:
            self._drain(group.spec.processor, slot, cause)

    def stop_all(self, cause: str = "the agent is stopping") -> None:
        """Drain every worker; kill those still running after the drain grace."""
        with self._lock:
            for group in self.groups.values():
                self._drain_group(group, cause)
            self.groups.clear()
        while True:
            self.poll()
            with self._lock:
                if not self._draining:
                    return
            time.sleep(0.1)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the worker and whatever it started (it leads its own session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
