"""Worker processes of one agent: start, watch, restart with backoff, pause, drain.

Each processor share is a *group* of ``flow worker start`` processes run with
the processor's own interpreter. A group is identified by what its code is
(the deployed commit and interpreter) and when it was last asked to restart;
when either changes, the supervisor starts a new group and drains the old one
(SIGTERM: finish and ack in-flight calls, then exit), so a code change rolls
over without losing a message. Pause and resume are SIGUSR1 and SIGUSR2: the
workers stop and restart consuming; nothing is frozen mid-call.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

log = logging.getLogger("pyfi.agent")

RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
STOP_TIMEOUT_S = 60.0


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
    crashes: int = 0
    next_start: float = 0.0
    started: float = 0.0


@dataclass
class Group:
    """The processes currently running one :class:`GroupSpec`."""

    spec: GroupSpec
    slots: list[Slot] = field(default_factory=list)
    paused: bool = False


class Supervisor:
    """Keeps each processor's worker processes as the agent's placement says."""

    def __init__(
        self,
        env: dict[str, str],
        logdir: Path,
        describe: Callable[[str], str | None] | None = None,
    ) -> None:
        """Supervise workers that log into ``logdir``.

        ``describe(processor)`` returns the processor's spec as JSON (or None);
        each worker started is handed the spec current at its start, so it
        consumes without reading the model first.
        """
        self.env = env
        self.logdir = logdir
        self.describe = describe
        self.groups: dict[str, Group] = {}
        # Processes told to drain, by processor: their exit is reported too.
        self._draining: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._died: list[tuple[str, int, int]] = []

    # -- desired state ---------------------------------------------------
    def apply(self, specs: list[GroupSpec]) -> None:
        """Make the running groups match ``specs`` (others are drained and removed)."""
        wanted = {spec.processor: spec for spec in specs}
        for name in list(self.groups):
            if name not in wanted:
                self._drain_group(self.groups.pop(name))
        for name, spec in wanted.items():
            group = self.groups.get(name)
            if group is not None and group.spec.identity != spec.identity:
                log.info("rolling %s over to commit %s", name, spec.commit[:12])
                self._drain_group(self.groups.pop(name))
                group = None
            if group is None:
                group = self.groups[name] = Group(spec)
            group.spec = spec
            self._resize(group)
            self._set_paused(group, spec.paused)

    def _resize(self, group: Group) -> None:
        while len(group.slots) > group.spec.workers:
            slot = group.slots.pop()
            if slot.process is not None:
                self._drain(group.spec.processor, slot.process)
        while len(group.slots) < group.spec.workers:
            group.slots.append(Slot())
        self.poll()

    def _set_paused(self, group: Group, paused: bool) -> None:
        if group.paused == paused:
            return
        group.paused = paused
        for slot in group.slots:
            if slot.process is not None and slot.process.poll() is None:
                slot.process.send_signal(signal.SIGUSR1 if paused else signal.SIGUSR2)

    # -- watching --------------------------------------------------------
    def reap(self) -> list[tuple[str, int, int]]:
        """(processor, pid, exit code) of each worker that exited since the last reap."""
        died, self._died = self._died, []
        return died

    def poll(self) -> None:
        """Start missing workers and restart crashed ones (with backoff)."""
        died = self._died
        now = time.monotonic()
        for name, group in self.groups.items():
            for slot in group.slots:
                if slot.process is not None and (code := slot.process.poll()) is not None:
                    died.append((name, slot.process.pid, code))
                    log.warning("worker %d of %s exited with %d", slot.process.pid, name, code)
                    lived = now - slot.started
                    slot.crashes = 0 if lived > 60 else slot.crashes + 1
                    delay = RESTART_BACKOFF_S[min(slot.crashes, len(RESTART_BACKOFF_S) - 1)]
                    slot.next_start = now + (delay if slot.crashes else 0.0)
                    slot.process = None
                if slot.process is None and now >= slot.next_start:
                    slot.process = self._start(group.spec)
                    slot.started = now
        still_draining = []
        for name, process in self._draining:
            code = process.poll()
            if code is None:
                still_draining.append((name, process))
            else:
                died.append((name, process.pid, code))
        self._draining = still_draining

    @property
    def draining(self) -> bool:
        """Whether workers told to stop are still finishing their calls."""
        return bool(self._draining)

    def pids(self) -> dict[str, list[int]]:
        """Running worker pids by processor."""
        return {
            name: [s.process.pid for s in group.slots if s.process and s.process.poll() is None]
            for name, group in self.groups.items()
        }

    def _start(self, spec: GroupSpec) -> subprocess.Popen[bytes]:
        self.logdir.mkdir(parents=True, exist_ok=True)
        log_path = self.logdir / f"{spec.processor}.log"
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
        described = self.describe(spec.processor) if self.describe is not None else None
        if described is not None:
            spec_path = self.logdir / f"{spec.processor}.spec.json"
            partial = spec_path.with_suffix(".partial")
            partial.write_text(described)
            partial.replace(spec_path)  # a starting worker never reads half a file
            command += ["--spec", str(spec_path)]
        with log_path.open("ab") as output:  # the child keeps its own descriptor
            process = subprocess.Popen(
                command,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,  # a Ctrl-C to the agent is the agent's to relay
            )
        if spec.paused:
            # Let the worker install its handlers before it is asked to pause.
            time.sleep(0.2)
            process.send_signal(signal.SIGUSR1)
        log.info("started worker %d of %s", process.pid, spec.processor)
        return process

    # -- stopping --------------------------------------------------------
    def _drain(self, processor: str, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        self._draining.append((processor, process))

    def _drain_group(self, group: Group) -> None:
        for slot in group.slots:
            if slot.process is not None:
                self._drain(group.spec.processor, slot.process)

    def stop_all(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Drain every worker; kill those still running after ``timeout_s``."""
        for group in self.groups.values():
            self._drain_group(group)
        self.groups.clear()
        deadline = time.monotonic() + timeout_s
        for _name, process in self._draining:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                process.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                log.warning("worker %d did not drain in time; killing it", process.pid)
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self._draining.clear()
