"""Where a workload's CPU went: per call, by role (workers, broker, Redis, ...).

Every process of the machine shares the same two cores, so throughput is set
by the CPU all of them spend per call, not by the workers' alone. A meter
reads every process's CPU time from ``/proc`` before and after a workload and
charges the difference to a role: the system's worker processes (and their
children), the harness (the caller), RabbitMQ, Redis, PostgreSQL, or other.
Figures are CPU microseconds per call; where ``/proc`` is missing (not
Linux) nothing is measured and the CPU table is left out.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.harness import Figure

PROC = Path("/proc")
ROLES = ("total", "workers", "caller", "broker", "redis", "postgres", "other")
# Server processes by their command name (/proc/<pid>/comm).
SERVER_ROLES = {
    "beam.smp": "broker",
    "erl_child_setup": "broker",
    "epmd": "broker",
    "inet_gethost": "broker",
    "redis-server": "redis",
    "postgres": "postgres",
}

# pid -> (parent pid, command, start time in ticks, CPU seconds)
Sample = dict[int, tuple[int, str, int, float]]


def available() -> bool:
    """True where per-process CPU can be read (Linux's /proc)."""
    return (PROC / "self" / "stat").exists()


def sample() -> Sample:
    """Every process's parent, command name, start and CPU seconds (user + system) so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    found: Sample = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        # The command sits in parentheses and may itself hold spaces or ")".
        command = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        cpu_seconds = (int(fields[11]) + int(fields[12])) / ticks
        found[int(entry.name)] = (int(fields[1]), command, int(fields[19]), cpu_seconds)
    return found


def roles(processes: Sample, workers: set[int], caller: int) -> dict[int, str]:
    """Each process's role: a worker's descendants are workers too."""
    assigned: dict[int, str] = {}

    def role_of(pid: int) -> str:
        if pid in assigned:
            return assigned[pid]
        parent, command, _, _ = processes[pid]
        if pid in workers:
            role = "workers"
        elif pid == caller:
            role = "caller"
        elif command in SERVER_ROLES:
            role = SERVER_ROLES[command]
        elif parent in processes and parent != pid and role_of(parent) == "workers":
            role = "workers"
        else:
            role = "other"
        assigned[pid] = role
        return role

    for pid in processes:
        role_of(pid)
    return assigned


def per_call(before: Sample, after: Sample, calls: int, workers: set[int]) -> dict[str, float]:
    """CPU microseconds per call spent by each role between two samples."""
    assigned = roles(after, workers, os.getpid())
    spent = dict.fromkeys(ROLES, 0.0)
    for pid, (_parent, _command, started, seconds) in after.items():
        earlier = before.get(pid)
        # A pid reused by a process started since began from nothing. (Not
        # told by the command: kernel workers rename themselves as they go.)
        start = earlier[3] if earlier is not None and earlier[2] == started else 0.0
        used = max(0.0, seconds - start)
        spent[assigned[pid]] += used
        spent["total"] += used
    return {role: 1e6 * seconds / max(calls, 1) for role, seconds in spent.items()}


class CpuMeter:
    """The CPU figures of one run: per workload and role, per system, over repetitions."""

    def __init__(self) -> None:
        self.enabled = available()
        self._figures: dict[tuple[str, str], Figure] = {}

    def figure(self, workload: str, role: str) -> Figure:
        key = (workload, role)
        if key not in self._figures:
            self._figures[key] = Figure(f"{workload} CPU {role}", "µs/call", False)
        return self._figures[key]

    @contextmanager
    def measure(
        self, workload: str | None, system: str, calls: int, workers: set[int]
    ) -> Iterator[dict[str, float]]:
        """Charge the CPU spent in the block to ``workload`` on ``system``.

        ``workers`` are the system's worker processes; their children (a
        prefork pool, Dramatiq's processes) are found at the end of the block.

        The yielded dict holds the per-role figures once the block is over
        (empty where nothing can be measured); with ``workload`` None they
        are only handed back, not recorded.
        """
        spent: dict[str, float] = {}
        if not self.enabled:
            yield spent
            return
        before = sample()
        yield spent
        spent.update(per_call(before, sample(), calls, workers))
        if workload is not None:
            self.add(workload, system, spent)

    def add(self, workload: str, system: str, micros: dict[str, float]) -> None:
        """Record per-role figures computed elsewhere (e.g. a difference of two runs)."""
        for role, value in micros.items():
            self.figure(workload, role).add(system, value)

    def figures(self) -> list[Figure]:
        """Every figure, workload by workload, roles in :data:`ROLES` order."""
        order = {role: index for index, role in enumerate(ROLES)}
        workloads: list[str] = []
        for workload, _ in self._figures:
            if workload not in workloads:
                workloads.append(workload)
        return [
            figure
            for workload in workloads
            for (name, role), figure in sorted(self._figures.items(), key=lambda i: order[i[0][1]])
            if name == workload
        ]
