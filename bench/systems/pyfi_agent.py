"""W7b: an agent redeploying an unchanged commit, its virtualenv already built.

An agent deploys the sample processor from a local git repository (the first
deploy builds the venv and is not timed); then each round asks for a restart
(`flow proc restart`) and times it until the processor's workers are all new
processes, registered running, and a call is answered.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from bench.systems.base import ROOT, Services
from bench.systems.pyfi_system import FLOW

PROCESSOR = "pbench"
WORKERS = 2


def _git_repo(folder: Path) -> str:
    repo = folder / "repo"
    shutil.copytree(
        ROOT / "processors_example",
        repo,
        ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"),
    )
    git = ["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=bench@pyfi.invalid"]
    for step in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "bench"]):
        subprocess.run([*git, *step], check=True, capture_output=True)
    return f"file://{repo}"


def _running(database: object) -> set[int]:
    from sqlalchemy import select

    from pyfi.db import models
    from pyfi.db.enums import WorkerStatus

    with database.transaction() as session:  # type: ignore[attr-defined]
        rows = session.scalars(
            select(models.Worker.pid).where(models.Worker.status == WorkerStatus.RUNNING)
        )
        return {pid for pid in rows if pid}


def _wait_new_workers(database: object, old: set[int], timeout: float = 120) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = _running(database)
        if len(pids) == WORKERS and not pids & old and all(_alive(p) for p in pids):
            return pids
        time.sleep(0.02)
    raise RuntimeError(f"the agent did not bring up {WORKERS} new workers in {timeout}s")


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def redeploy_seconds(services: Services, rounds: int) -> list[float]:
    """Seconds from `flow proc restart` to new workers answering, per round."""
    from pyfi.client.calls import Client
    from pyfi.config import load_settings
    from pyfi.db.session import Database

    env = {
        **services.env,
        "PYFI_DB": services.database_url,
        "PYFI_BROKER": services.amqp_url,
        "PYFI_BACKEND": services.redis_url,
        "PYFI_INI": "/dev/null",
        "PYFI_ALLOWED_REPOS": "file://*",
    }

    def flow(*args: str) -> None:
        subprocess.run([FLOW, *args], env=env, check=True, capture_output=True)

    flow("db", "init")
    flow("add", "queue", "-n", "agentq")
    flow("add", "processor", "-n", PROCESSOR, "-g", _git_repo(services.workdir),
         "-m", "pyfi_examples.sample", "-c", str(WORKERS))  # fmt: skip
    flow("add", "socket", "-n", "agent.sock", "-q", "agentq", "-pn", PROCESSOR, "-t", "do_this")
    log = (services.workdir / "agent.log").open("wb")
    agent = subprocess.Popen(
        [FLOW, "agent", "start", "--name", "bench", "--cpus", str(WORKERS), "--port", "0",
         "--workdir", str(services.workdir / "agent")],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    database = Database(services.database_url)
    client = Client(load_settings({}, env))
    seconds = []
    try:
        pids = _wait_new_workers(database, set(), timeout=600)  # first deploy builds the venv
        for _ in range(rounds):
            start = time.perf_counter()
            flow("proc", "restart", "-n", PROCESSOR)
            pids = _wait_new_workers(database, pids)
            client.result(client.send("agent.sock", ["x"]).call_id, 60)
            seconds.append(time.perf_counter() - start)
    finally:
        agent.terminate()
        agent.wait(60)
        log.close()
        client.close()
        database.dispose()
    return seconds
