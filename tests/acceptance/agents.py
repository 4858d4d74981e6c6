"""Helpers of the agent tests: a git repository of processors, a shared virtualenv cache."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.acceptance.mesh import EXAMPLES, Stack, WorkerProcess
from tests.conftest import made_once

THIS = "pyfi.processors.sample.do_this"
# The first virtualenv build of a test run installs pyfi into it: a minute or
# two on a quiet 2-core host, over five minutes on one loaded nine times over.
DEPLOY_TIMEOUT = 600


@dataclass(frozen=True)
class Repo:
    """A git repository of processors_example: main, and a v2 commit on its own branch."""

    url: str
    main: str
    v2: str


def _git(path: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=pyfi", "-c", "user.email=pyfi@example.org", *args],
        cwd=path,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def _make_example_repo(folder: Path) -> None:
    path = folder / "processors_example"
    shutil.copytree(EXAMPLES, path, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    _git(path, "init", "-q", "-b", "main")
    _git(path, "add", ".")
    _git(path, "commit", "-q", "-m", "sample processors")
    _git(path, "checkout", "-q", "-b", "v2")
    sample = path / "pyfi_examples" / "sample.py"
    sample.write_text(
        sample.read_text().replace('f"Do this: {message}"', 'f"Do this v2: {message}"')
    )
    _git(path, "commit", "-q", "-am", "do_this v2")
    _git(path, "checkout", "-q", "main")


@pytest.fixture(scope="session")
def example_repo(run_folder: Path) -> Repo:
    """One repository for the whole run, so every test process deploys the same commits."""
    path = made_once(run_folder / "agent-repo", _make_example_repo) / "processors_example"
    main, v2 = (_git(path, "rev-parse", branch) for branch in ("main", "v2"))
    return Repo(f"file://{path}", main, v2)


@pytest.fixture(scope="session")
def venv_cache(run_folder: Path) -> Path:
    """The run's venv cache: a venv of the same commit is built once, whichever process asks."""
    cache = run_folder / "agent-venvs"
    cache.mkdir(exist_ok=True)
    return cache


def network(stack: Stack, repo: Repo, *, concurrency: int = 1, extra: str = "") -> None:
    """The first flow: queue1, processor proc1 from ``repo``, the do_this socket."""
    stack.cli("add queue -n pyfi.queue1")
    stack.cli(
        f"add processor -n proc1 -g {repo.url} -m pyfi_examples.sample -c {concurrency} {extra}"
    )
    stack.cli(f"add socket -n {THIS} -q pyfi.queue1 -pn proc1 -t do_this")


def processor_status(stack: Stack, name: str = "proc1") -> str:
    """What the agents last reported about a processor."""
    return str(stack.show("processor", name)["processor"]["status"])


def worker_rows(stack: Stack, status: str = "running") -> list[dict]:
    """The workers table's rows in ``status``."""
    rows = json.loads(stack.cli("ls workers --json"))
    return [w for w in rows if w["status"] == status]


def health(agent: WorkerProcess) -> dict:
    """What the agent's health endpoint says now."""
    port = int(agent.output().split("health on 127.0.0.1:")[1].split(")")[0])
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
        return dict(json.loads(response.read()))
