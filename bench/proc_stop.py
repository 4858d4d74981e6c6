"""How long from `flow proc stop` to the processor's workers being gone.

Runs against the real stack (PostgreSQL for LISTEN/NOTIFY, RabbitMQ, Redis):
builds a processor from processors_example as a local git repository, starts
an agent, and times several stop/start rounds. Prints the figures; asserts
nothing (a benchmark is not a test).

    .venv/bin/python bench/proc_stop.py [--rounds 5]

Environment: PYFI_BENCH_DB (default postgresql+psycopg://postgres@127.0.0.1/test),
PYFI_BENCH_AMQP (amqp://guest:guest@127.0.0.1:5672//), PYFI_BENCH_REDIS
(redis://127.0.0.1:6379/14). A schema `bench_proc_stop` is created and dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLOW = str(Path(sys.executable).parent / "flow")
SCHEMA = "bench_proc_stop"


def flow(env: dict[str, str], *args: str) -> str:
    return subprocess.run([FLOW, *args], env=env, check=True, capture_output=True, text=True).stdout


def running_pids(env: dict[str, str]) -> list[int]:
    rows = json.loads(flow(env, "ls", "workers", "--json"))
    return [w["pid"] for w in rows if w["status"] == "running"]


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def wait_workers(env: dict[str, str], count: int, timeout: float = 300) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = running_pids(env)
        if len(pids) == count and all(alive(p) for p in pids):
            return pids
        time.sleep(0.2)
    raise SystemExit(f"the agent did not start {count} workers in {timeout}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    database = os.environ.get("PYFI_BENCH_DB", "postgresql+psycopg://postgres@127.0.0.1/test")
    work = Path(tempfile.mkdtemp(prefix="pyfi-bench-"))
    env = {
        **os.environ,
        "PYFI_DB": f"{database}?options=-csearch_path%3D{SCHEMA}",
        "PYFI_BROKER": os.environ.get("PYFI_BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672//"),
        "PYFI_BACKEND": os.environ.get("PYFI_BENCH_REDIS", "redis://127.0.0.1:6379/14"),
        "PYFI_ALLOWED_REPOS": "file://*",
        "PYFI_INI": os.devnull,
    }
    import psycopg

    dsn = database.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{SCHEMA}"')
    repo = work / "repo"
    shutil.copytree(
        ROOT / "processors_example",
        repo,
        ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"),
    )
    git = ["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=bench@pyfi.invalid"]
    for step in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "bench"]):
        subprocess.run([*git, *step], check=True)
    flow(env, "db", "init")
    flow(env, "add", "queue", "-n", "benchq")
    flow(
        env,
        "add",
        "processor",
        "-n",
        "pbench",
        "-g",
        f"file://{repo}",
        "-m",
        "pyfi_examples.sample",
        "-c",
        "2",
    )
    flow(env, "add", "socket", "-n", "bench.sock", "-q", "benchq", "-pn", "pbench", "-t", "do_this")
    agent = subprocess.Popen(
        [
            FLOW,
            "agent",
            "start",
            "--name",
            "bench",
            "--cpus",
            "2",
            "--port",
            "0",
            "--workdir",
            str(work / "agent"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    command_s: list[float] = []
    gone_s: list[float] = []
    try:
        for _ in range(rounds):
            pids = wait_workers(env, 2)
            start = time.monotonic()
            flow(env, "proc", "stop", "-n", "pbench")
            command_s.append(time.monotonic() - start)
            while any(alive(p) for p in pids):
                time.sleep(0.002)
            gone_s.append(time.monotonic() - start)
            flow(env, "proc", "start", "-n", "pbench")
    finally:
        agent.terminate()
        agent.wait(60)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
        shutil.rmtree(work, ignore_errors=True)
    print(f"rounds: {rounds}")
    print(
        "`flow proc stop` to all workers gone (s): "
        f"min {min(gone_s):.3f}  median {statistics.median(gone_s):.3f}  max {max(gone_s):.3f}"
    )
    print(
        "  of which the `flow proc stop` process itself (s): "
        f"median {statistics.median(command_s):.3f}"
    )
    reaction = [g - c for g, c in zip(gone_s, command_s, strict=True)]
    print(
        f"  agent reaction + drain after the command returned (s): "
        f"median {statistics.median(reaction):.3f}"
    )


if __name__ == "__main__":
    main()
