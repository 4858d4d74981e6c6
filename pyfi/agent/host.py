"""What this host is and has: the facts an agent reports on every heartbeat."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class HostFacts:
    """A snapshot of the host's resources."""

    hostname: str
    cpus: int
    memsize: int
    freemem: int
    memused: float
    disksize: int
    diskusage: float
    cpuload: float


def measure(workdir: Path) -> HostFacts:
    """Measure the host now (cheap: a few system calls)."""
    memory = psutil.virtual_memory()
    workdir.mkdir(parents=True, exist_ok=True)
    disk = psutil.disk_usage(str(workdir))
    load1, _load5, _load15 = os.getloadavg()
    return HostFacts(
        hostname=socket.gethostname(),
        cpus=psutil.cpu_count(logical=True) or 1,
        memsize=memory.total,
        freemem=memory.available,
        memused=memory.percent,
        disksize=disk.total,
        diskusage=disk.percent,
        cpuload=load1,
    )
