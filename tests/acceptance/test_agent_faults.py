"""Agents under faults: a database outage, a deploy that blows up, killed and stuck workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from sqlalchemy.engine import make_url

from tests.acceptance.agents import (
    DEPLOY_TIMEOUT,
    THIS,
    Repo,
    health,
    network,
    processor_status,
    worker_rows,
)
from tests.acceptance.mesh import Stack, wait_for
from tests.conftest import NEEDS_ALL_SERVICES
from tests.relay import TcpRelay

# The first deploy of a test run builds a virtualenv with pyfi in it.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2 * DEPLOY_TIMEOUT)]

KILLS = 6
# A deadline for the test's patience, not a measure of speed (the figures are printed).
REPLACED_WITHIN_S = 10.0


def _consuming(stack: Stack) -> list[int]:
    """The pids the (only) agent says are consuming for proc1."""
    return list(health(stack.agents[0]).get("consuming", {}).get("proc1", []))


def _running_calls(stack: Stack, socket: str) -> list[dict]:
    page = json.loads(stack.cli(f"ls calls --socket {socket} --json"))
    return [c for c in page["calls"] if c["state"] == "running"]


@pytest.fixture
def deployed(stack: Stack, example_repo: Repo, venv_cache: Path) -> Stack:
    """proc1 deployed by one agent, its worker consuming."""
    network(stack, example_repo)
    stack.start_agent("a1", venv_cache)
    wait_for(lambda: processor_status(stack) == "running", DEPLOY_TIMEOUT, "deploying proc1")
    wait_for(lambda: len(_consuming(stack)) == 1, 60, "one consuming worker")
    return stack


@pytest.mark.parametrize("stack", [pytest.param("real", marks=NEEDS_ALL_SERVICES)], indirect=True)
def test_agent_rides_out_a_database_outage(
    stack: Stack, example_repo: Repo, venv_cache: Path
) -> None:
    # Given an agent that reaches PostgreSQL through a relay, its worker consuming
    url = make_url(stack.env["PYFI_DB"])
    proxy = TcpRelay(url.host or "127.0.0.1", url.port or 5432)
    proxy.set_up(True)
    relayed = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    try:
        network(stack, example_repo)
        agent = stack.start_agent("a1", venv_cache, env={"PYFI_DB": relayed})
        wait_for(lambda: processor_status(stack) == "running", DEPLOY_TIMEOUT, "deploying proc1")
        wait_for(lambda: len(worker_rows(stack)) == 1, 60, "one running worker")
        (pid,) = [w["pid"] for w in worker_rows(stack)]

        # When the database is cut off from it, and a change is made meanwhile
        proxy.set_up(False)
        stack.cli("update processor -n proc1 -c 2")
        wait_for(
            lambda: "the database is unreachable" in agent.output(),
            30,
            "the agent seeing the outage",
        )
        time.sleep(4)  # several seconds more of outage

        # Then the agent and its worker are still running, and the worker answers calls
        assert agent.process.poll() is None, agent.output()
        assert psutil.pid_exists(pid)
        assert health(agent)["database"] == "unreachable"
        with stack.client() as client:
            call = client.send(THIS, ["during the outage"])
            assert client.result(call.call_id, 30) == "Do this: during the outage"

        # When the database is back
        proxy.set_up(True)

        # Then the agent catches up with the change it missed, the first worker still there
        wait_for(lambda: len(worker_rows(stack)) == 2, 60, "the second worker")
        assert pid in [w["pid"] for w in worker_rows(stack)]
        assert health(agent)["database"] == "ok"
        # And said so once when it went, once when it came back
        output = agent.output()
        assert output.count("the database is unreachable") == 1, output
        assert "the database is back" in output
    finally:
        proxy.stop()


def test_agent_contains_a_deploy_that_raises(
    stack: Stack, example_repo: Repo, venv_cache: Path
) -> None:
    # Given two processors, and proc2's folder on the agent's host taken by a file,
    # so that its deploy raises an OSError (as a full disk or a missing git would)
    network(stack, example_repo)
    # (proc2 runs proc1's commit from a branch of its own: a deploy of its own,
    # the virtualenv of proc1)
    repo_path = example_repo.url.removeprefix("file://")
    subprocess.run(["git", "-C", repo_path, "branch", "-f", "proc2", example_repo.main], check=True)
    stack.cli(
        f"add processor -n proc2 -g {example_repo.url} -m pyfi_examples.sample"
        f" --branch proc2 --commit {example_repo.main}"
    )
    stack.cli("add socket -n proc2.this -q pyfi.queue1 -pn proc2 -t do_this")
    blocker = stack.tmp / "agents" / "a1" / "processors" / "proc2"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("in the way")

    # When the agent deploys them
    agent = stack.start_agent("a1", venv_cache)

    # Then proc2 fails with a one-line reason
    wait_for(lambda: processor_status(stack, "proc2") == "failed", DEPLOY_TIMEOUT, "proc2 failed")
    reason = stack.show("processor", "proc2")["processor"]["status_reason"]
    assert "FileExistsError" in reason
    assert "\n" not in reason
    # When the cause is gone (before the backoff between retries has grown)
    blocker.unlink()

    # Then proc1 deploys and answers meanwhile, and a retry deploys proc2 too
    wait_for(lambda: processor_status(stack) == "running", DEPLOY_TIMEOUT, "deploying proc1")
    with stack.client() as client:
        assert client.result(client.send(THIS, ["x"]).call_id, 60) == "Do this: x"
    wait_for(lambda: processor_status(stack, "proc2") == "running", DEPLOY_TIMEOUT, "proc2")
    assert agent.process.poll() is None
    assert "cannot deploy proc2: FileExistsError" in agent.output()


def test_agent_replaces_each_killed_worker_at_once(deployed: Stack) -> None:
    agent = deployed.agents[0]
    started, consuming = [], []
    # When proc1's worker is killed with SIGKILL, again and again
    for _ in range(KILLS):
        (pid,) = _consuming(deployed)
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        # Then each time a replacement consumes well before the deadline: the
        # delay does not grow with the kills (it used to back off up to 30 s)
        seen: dict[str, float] = {}
        while "consuming" not in seen and time.monotonic() < killed + REPLACED_WITHIN_S:
            report = health(agent)
            for kind in ("workers", "consuming"):
                if kind not in seen and report[kind].get("proc1", []) not in ([pid], []):
                    seen[kind] = time.monotonic() - killed
            time.sleep(0.02)
        assert "consuming" in seen, f"no replacement consuming {REPLACED_WITHIN_S}s after a kill"
        started.append(seen.get("workers", seen["consuming"]))
        consuming.append(seen["consuming"])
    print("\nkill -9 to a replacement started (s):", ", ".join(f"{t:.2f}" for t in started))
    print("kill -9 to a replacement consuming (s):", ", ".join(f"{t:.2f}" for t in consuming))
    # And calls still work
    with deployed.client() as client:
        assert client.result(client.send(THIS, ["back"]).call_id, 30) == "Do this: back"
    # And the agent logged each death with its cause
    assert agent.output().count("died (signal SIGKILL); replacing it") == KILLS


def test_agent_kills_a_worker_that_does_not_drain_in_time(
    stack: Stack, example_repo: Repo, venv_cache: Path
) -> None:
    # Given an agent that lets workers take 1 s to drain, and a worker in a long call
    network(stack, example_repo)
    stack.cli("add socket -n slow.sock -q pyfi.queue1 -pn proc1 -t slow")
    agent = stack.start_agent("a1", venv_cache, options=("--drain-grace", "1"))
    wait_for(lambda: processor_status(stack) == "running", DEPLOY_TIMEOUT, "deploying proc1")
    wait_for(lambda: len(_consuming(stack)) == 1, 60, "one consuming worker")
    (pid,) = _consuming(stack)
    with stack.client() as client:
        client.send("slow.sock", ["stuck"], {"seconds": 120})
        wait_for(lambda: _running_calls(stack, "slow.sock"), 30, "the call running")

        # When the processor is restarted
        stack.cli("proc restart -n proc1")

        # Then the old worker is killed once its grace is over, not after its call
        wait_for(lambda: not psutil.pid_exists(pid), 30, "the old worker killed")
    output = agent.output()
    assert f"worker {pid} of proc1 did not drain within 1s (restart requested)" in output
    assert f"worker {pid} of proc1 stopped (restart requested): signal SIGKILL" in output
