"""The network under test: the probe processor deployed by a real `flow agent start`.

The probe (``bench/chaos/probe``) is copied into a git repository of the run
and declared as processor ``chaos`` with the sockets ``chaos.touch`` and
``chaos.exit``; an agent process of its own deploys it (the first deploy of a
run builds the virtualenv, later ones reuse it from the run's venv cache) and
supervises its workers. A :class:`Watch` thread samples the agent's worker
processes (pids, memory) without asking the database or the broker, so it
keeps seeing through the outages the cases stage.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.chaos.stack import Stack

PROBE = Path(__file__).resolve().parent / "probe"
FLOW = str(Path(sys.executable).parent / "flow")
PROCESSOR = "chaos"
QUEUE = "chaos.queue"
TOUCH = "chaos.touch"
EXIT = "chaos.exit"
WORKERS = 2
DEPLOY_TIMEOUT_S = 600.0  # the first deploy of a run builds the virtualenv
STOP_TIMEOUT_S = 10.0
FIXED_DATE = "2026-01-01T00:00:00+00:00"
SAMPLE_S = 0.05


def make_repo(folder: Path) -> str:
    """A git repository holding the probe module; returns its ``file://`` URL.

    The commit is reproducible (fixed author and dates), so a repository made
    again in the same folder has the same URL and commit, and an agent finds
    the processor's virtualenv in a venv cache kept from an earlier run.
    """
    repo = folder / "probe-repo"
    shutil.rmtree(repo, ignore_errors=True)
    shutil.copytree(PROBE, repo, ignore=shutil.ignore_patterns("__pycache__"))
    git = ["git", "-C", str(repo), "-c", "user.name=chaos", "-c", "user.email=chaos@pyfi.invalid"]
    env = {**os.environ, "GIT_AUTHOR_DATE": FIXED_DATE, "GIT_COMMITTER_DATE": FIXED_DATE}
    for step in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "probe"]):
        subprocess.run([*git, *step], check=True, capture_output=True, env=env)
    return f"file://{repo}"


def flow(env: dict[str, str], *args: str) -> str:
    """Run one `flow` command in this process (no interpreter start-up); raise if it fails."""
    from click.testing import CliRunner

    from pyfi.cli import cli

    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=True)
    if result.exit_code != 0:
        raise RuntimeError(f"flow {' '.join(args)} failed: {result.output.strip()}")
    return result.output


def declare(env: dict[str, str], repo_url: str) -> None:
    """Migrate the model and declare the probe processor and its sockets."""
    flow(env, "db", "init")
    flow(env, "add", "queue", "-n", QUEUE)
    flow(env, "add", "processor", "-n", PROCESSOR, "-g", repo_url, "-m", "chaos_probe",
         "-c", str(WORKERS))  # fmt: skip
    flow(env, "add", "socket", "-n", TOUCH, "-q", QUEUE, "-pn", PROCESSOR, "-t", "touch")
    flow(env, "add", "socket", "-n", EXIT, "-q", QUEUE, "-pn", PROCESSOR, "-t", "exit_now")


def _is_worker(process: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        command = process.cmdline()
        return "worker" in command and "start" in command and process.status() != "zombie"
    return False


@dataclass
class Watch:
    """What happened to the agent's worker processes, sampled every few ms."""

    agent_pid: int
    seen: dict[int, float] = field(default_factory=dict)  # pid -> when first seen
    gone: dict[int, float] = field(default_factory=dict)  # pid -> when last seen alive
    peak_rss: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="chaos-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def alive(self) -> list[int]:
        """The agent's live worker pids now."""
        try:
            children = psutil.Process(self.agent_pid).children()
        except psutil.Error:
            return []
        return [p.pid for p in children if _is_worker(p)]

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            live = set()
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(self.agent_pid).children():
                    if not _is_worker(child):
                        continue
                    live.add(child.pid)
                    self.seen.setdefault(child.pid, now)
                    with contextlib.suppress(psutil.Error):
                        self.peak_rss = max(self.peak_rss, child.memory_info().rss)
            for pid in self.seen:
                if pid not in live and pid not in self.gone:
                    self.gone[pid] = now
            time.sleep(SAMPLE_S)


class Agent:
    """A `flow agent start` process of the case, its log and its workers' log."""

    def __init__(
        self, stack: Stack, name: str, venv_cache: Path, *, memory_limit: int | None = None
    ) -> None:
        self.workdir = stack.folder / f"agent-{name}"
        self.log_path = stack.folder / f"agent-{name}.log"
        self.worker_log = self.workdir / "logs" / f"{PROCESSOR}.log"
        self._log = self.log_path.open("wb")

        def limit_memory() -> None:  # inherited by the workers: a bomb fails, not the machine
            if memory_limit:
                resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

        self.process = subprocess.Popen(
            [FLOW, "agent", "start", "--name", name, "--cpus", str(WORKERS), "--port", "0",
             "--workdir", str(self.workdir), "--venv-cache", str(venv_cache)],
            env=stack.env(stack.tested), stdout=self._log, stderr=subprocess.STDOUT,
            preexec_fn=limit_memory,  # noqa: PLW1509 - no thread of ours runs yet in the child
        )  # fmt: skip
        self.watch = Watch(self.process.pid)
        self.watch.start()

    def wait_workers(self, timeout: float = DEPLOY_TIMEOUT_S) -> list[int]:
        """Wait for the processor's workers to consume; their pids."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the agent exited {self.process.returncode}: {self.tail()}")
            pids = self.watch.alive()
            consuming = self.worker_log.is_file() and self.worker_log.read_text(
                errors="replace"
            ).count("consuming") >= len(pids)
            if len(pids) == WORKERS and consuming:
                return pids
            time.sleep(0.2)
        raise RuntimeError(f"no {WORKERS} workers after {timeout:.0f}s: {self.tail()}")

    def tail(self, lines: int = 5) -> str:
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:])

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def worker_log_size(self) -> int:
        try:
            return self.worker_log.stat().st_size
        except FileNotFoundError:
            return 0

    def stop(self) -> None:
        """SIGTERM (the agent drains its workers); SIGKILL whatever is left after a while."""
        self.watch.stop()
        pids = self.watch.alive()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        for pid in pids:  # workers the agent did not take down with it
            with contextlib.suppress(psutil.Error):
                worker = psutil.Process(pid)
                if _is_worker(worker):
                    worker.kill()
        self._log.close()


class Ledger:
    """The probe's record of executions: one ``<token> <pid>`` line per run of a function."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()

    def runs(self) -> list[tuple[str, int]]:
        rows = []
        for line in self.path.read_text(errors="replace").splitlines():
            token, _, pid = line.partition(" ")
            rows.append((token, int(pid) if pid.isdigit() else 0))
        return rows

    def counts(self) -> Counter[str]:
        return Counter(token for token, _pid in self.runs())


def environment_for_client(stack: Stack) -> dict[str, str]:
    """Settings for the suite's own client: the direct URLs."""
    return {**os.environ, **stack.direct, "PYFI_INI": os.devnull}
