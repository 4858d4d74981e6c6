"""What every measured system offers the harness.

Each workload method runs the whole workload once and returns when it is
done (every result fetched, every message processed); the harness times it.
Methods a system cannot run (e.g. W8 for Celery) raise NotImplementedError
and show as "-" in the table.
"""

from __future__ import annotations

import os
import subprocess
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1]
ROOT = BENCH.parent


@dataclass(frozen=True)
class Services:
    """The servers every system shares in one run."""

    amqp_url: str  # a vhost of its own, created by the harness
    redis_url: str  # a database of its own, flushed by the harness
    database_url: str  # PostgreSQL, for pyfi's meta-model and call records
    workdir: Path  # scratch space for logs and files
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))


class System(ABC):
    """A task system with two worker processes on the shared services."""

    name: str = ""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.processes: list[subprocess.Popen[bytes]] = []

    @abstractmethod
    def start(self) -> None:
        """Start two worker processes and return once they consume."""

    def spawn(self, command: list[str], log_name: str) -> None:
        """Start a worker command with the task modules' server variables set.

        It runs from the repository root (``python -m`` puts the working
        directory on sys.path), its output in ``log_name`` under the workdir.
        """
        from bench.systems import counter

        env = {
            **self.services.env,
            counter.AMQP_ENV: self.services.amqp_url,
            counter.REDIS_ENV: self.services.redis_url,
        }
        self.services.workdir.mkdir(parents=True, exist_ok=True)
        with (self.services.workdir / log_name).open("ab") as log:
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", *command],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )

    def stop(self) -> None:
        """Stop the worker processes (SIGTERM, then SIGKILL after 20 s)."""
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes = []

    # W1: n calls of a no-op returning a small value, then fetch every result.
    @abstractmethod
    def roundtrip(self, n: int) -> None: ...

    # W2: n fire-and-forget calls; return when all have been processed.
    @abstractmethod
    def fire_and_forget(self, n: int) -> None: ...

    # W3: n sequential call+get; returns each latency in seconds.
    @abstractmethod
    def latencies(self, n: int) -> list[float]: ...

    # W4: n pipelines (chains) of `length` steps; return when all results are in.
    @abstractmethod
    def pipelines(self, n: int, length: int) -> None: ...

    # W5: n funnels (chords) of `width` parallel calls and a callback.
    @abstractmethod
    def funnels(self, n: int, width: int) -> None: ...

    # W6: n messages through a 3-step chain wired in the system (pyfi: plugs;
    # Celery: link); return when the last step has processed all n.
    @abstractmethod
    def plug_chain(self, n: int) -> None: ...
