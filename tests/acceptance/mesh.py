"""A pyfi network under test: its services, its `flow` commands, its worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from shlex import split

import pytest

from pyfi.client.calls import Client
from pyfi.config import Settings, load_settings
from tests.conftest import Flow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "processors_example"
PROBES = ROOT / "tests" / "processors"
FLOW = [str(Path(sys.executable).parent / "flow")]


@dataclass
class WorkerProcess:
    """A `flow worker start` child process and its log."""

    process: subprocess.Popen[bytes]
    log: Path

    def wait_ready(self, timeout: float = 60.0, marker: str = "consuming") -> None:
        """Wait for ``marker`` in the log: seconds, many more on a loaded host."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if marker in self.log.read_text(errors="replace"):
                return
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited {self.process.returncode}:\n{self.output()}")
            time.sleep(0.05)
        raise AssertionError(f"worker not ready after {timeout}s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, then wait for the graceful exit."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL: no chance to ack or clean up."""
        self.process.kill()
        self.process.wait(timeout=10)


@dataclass
class Stack:
    """One configuration of pyfi (embedded or real services) with helpers to drive it."""

    name: str
    env: dict[str, str]
    flow: Flow
    probe_dir: Path
    tmp: Path
    workers: list[WorkerProcess] = field(default_factory=list)
    agents: list[WorkerProcess] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return load_settings({}, {**os.environ, **self.env})

    def cli(self, command: str) -> str:
        """Run a `flow` command in-process; return its stdout."""
        return self.flow(*split(command)).output

    def run_flow(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run `flow` as a real process."""
        return subprocess.run(
            [*FLOW, *args],
            input=stdin,
            capture_output=True,
            text=True,
            env={**os.environ, **self.env},
            timeout=120,
            check=False,
        )

    def start_worker(
        self, processor: str, *, path: Path = EXAMPLES, concurrency: int = 2
    ) -> WorkerProcess:
        log = self.tmp / f"worker-{processor}-{len(self.workers)}.log"
        with log.open("wb") as output:  # the child keeps its own copy of the descriptor
            process = subprocess.Popen(
                [
                    *FLOW,
                    "worker",
                    "start",
                    "-p",
                    processor,
                    "--path",
                    str(path),
                    "-c",
                    str(concurrency),
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
            )
        worker = WorkerProcess(process, log)
        self.workers.append(worker)
        worker.wait_ready()
        return worker

    def start_agent(
        self,
        name: str,
        venv_cache: Path,
        *,
        cpus: int = 2,
        allowed: str = "file://*",
        env: dict[str, str] | None = None,
        options: tuple[str, ...] = (),
    ) -> WorkerProcess:
        """A real `flow agent start` process, ready once it says it is online.

        ``env`` overrides the stack's settings for the agent alone (a database
        URL through a relay, say); ``options`` are added to its command line.
        """
        log = self.tmp / f"agent-{name}.log"
        env = {**os.environ, **self.env, "PYFI_ALLOWED_REPOS": allowed, **(env or {})}
        with log.open("wb") as output:
            process = subprocess.Popen(
                [
                    *FLOW,
                    "agent",
                    "start",
                    "--name",
                    name,
                    "--cpus",
                    str(cpus),
                    "--port",
                    "0",
                    "--workdir",
                    str(self.tmp / "agents" / name),
                    "--venv-cache",
                    str(venv_cache),
                    *options,
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
                env=env,
            )
        agent = WorkerProcess(process, log)
        self.agents.append(agent)
        agent.wait_ready(marker="online")
        return agent

    def show(self, kind: str, name: str) -> dict:
        """`flow ls KIND -n NAME --json`, parsed."""
        import json

        return json.loads(self.cli(f"ls {kind} -n {name} --json"))

    def client(self) -> Client:
        return Client(self.settings)

    def traces(self, kind: str) -> list[str]:
        folder = self.probe_dir / kind
        return sorted(p.read_text() for p in folder.iterdir()) if folder.is_dir() else []

    def close(self) -> None:
        for agent in self.agents:  # gracefully: an agent drains its own workers
            try:
                agent.stop(timeout=30)
            except subprocess.TimeoutExpired:
                agent.kill()
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.kill()


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``predicate`` until it is true, or fail saying what never happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {timeout}s")


def make_stack(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Stack]:
    """Build the stack named by ``request.param`` with a migrated, empty database."""
    from pyfi.db import schema
    from pyfi.db.session import Database

    probe_dir = tmp_path / "probes"
    probe_dir.mkdir()
    if request.param == "embedded":
        env = {
            "PYFI_DB": f"sqlite:///{tmp_path / 'pyfi.sqlite'}",
            "PYFI_BROKER": f"filesystem://{tmp_path / 'broker'}",
            "PYFI_BACKEND": f"sqlite:///{tmp_path / 'results.sqlite'}",
        }
    else:
        env = {
            "PYFI_DB": request.getfixturevalue("postgres_url"),
            "PYFI_BROKER": request.getfixturevalue("amqp_url"),
            "PYFI_BACKEND": request.getfixturevalue("redis_url"),
        }
    env["PYFI_PROBE_DIR"] = str(probe_dir)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    database = Database(env["PYFI_DB"])
    schema.upgrade(database)
    database.dispose()
    stack = Stack(request.param, env, Flow(env["PYFI_DB"], monkeypatch), probe_dir, tmp_path)
    yield stack
    stack.close()
