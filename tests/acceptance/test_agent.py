"""Agents on one machine: deploy from git, supervise workers, obey `flow proc`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from pyfi.wiring import spec_from_json
from tests.acceptance.mesh import EXAMPLES, Stack, wait_for
from tests.conftest import made_once

THIS = "pyfi.processors.sample.do_this"
# The first virtualenv build of a test run installs pyfi into it: a minute or
# two on a quiet 2-core host, over five minutes on one loaded nine times over.
DEPLOY_TIMEOUT = 600

# A test may wait for two builds (main, then v2): the suite's 120 s would cut
# the first deploy of a run short on a loaded host, long before DEPLOY_TIMEOUT.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2 * DEPLOY_TIMEOUT)]


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


def _network(stack: Stack, repo: Repo, *, concurrency: int = 1, extra: str = "") -> None:
    stack.cli("add queue -n pyfi.queue1")
    stack.cli(
        f"add processor -n proc1 -g {repo.url} -m pyfi_examples.sample -c {concurrency} {extra}"
    )
    stack.cli(f"add socket -n {THIS} -q pyfi.queue1 -pn proc1 -t do_this")


def _status(stack: Stack) -> str:
    return str(stack.show("processor", "proc1")["processor"]["status"])


def _workers(stack: Stack, status: str = "running") -> list[dict]:
    rows = json.loads(stack.cli("ls workers --json"))
    return [w for w in rows if w["status"] == status]


@pytest.fixture
def deployed(stack: Stack, example_repo: Repo, venv_cache: Path) -> Stack:
    """The first flow's processor deployed by one agent."""
    _network(stack, example_repo)
    stack.start_agent("a1", venv_cache)
    wait_for(lambda: _status(stack) == "running", DEPLOY_TIMEOUT, "deploying proc1")
    wait_for(lambda: len(_workers(stack)) == 1, 30, "one running worker")
    return stack


def test_agent_deploys_and_task_run_works(deployed: Stack) -> None:
    # Given an agent that deployed proc1 from git
    # When the reference command runs
    done = deployed.run_flow("task", "run", "--socket", THIS, "--data", "['some data']")
    # Then the deployed code answers
    assert done.stdout == "Do this: ['some data']\n", done.stderr
    agents = json.loads(deployed.cli("ls agents --json"))
    assert [(a["name"], a["status"]) for a in agents] == [("a1", "online")]
    # And the health endpoint reports the agent and its worker
    agent_log = (deployed.tmp / "agent-a1.log").read_text()
    port = int(agent_log.split("health on 127.0.0.1:")[1].split(")")[0])
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
        health = json.loads(response.read())
    assert health["agent"] == "a1"
    assert health["status"] == "online"
    assert [len(pids) for pids in health["workers"].values()] == [1]
    # And its worker was handed the processor's spec rather than reading the model
    (pid,) = next(iter(health["workers"].values()))
    command = psutil.Process(pid).cmdline()
    spec_file = Path(command[command.index("--spec") + 1])
    assert spec_from_json(spec_file.read_text()).name == "proc1"


def test_agent_obeys_stop_pause_resume_restart(deployed: Stack) -> None:
    # When the processor is stopped, its worker drains and goes away
    deployed.cli("proc stop -n proc1")
    wait_for(lambda: not _workers(deployed), 10, "the worker stopping")
    # And a call sent meanwhile waits in its queue
    with deployed.client() as client:
        call = client.send(THIS, ["queued"])
        # When it is started again, the waiting call completes
        deployed.cli("proc start -n proc1")
        assert client.result(call.call_id, 60) == "Do this: queued"
        # When paused, a new call is not taken...
        deployed.cli("proc pause -n proc1")
        wait_for(lambda: _workers(deployed, "paused"), 10, "the worker pausing")
        paused_call = client.send(THIS, ["paused"])
        with pytest.raises(Exception, match="no result"):
            client.result(paused_call.call_id, 2)
        # ... until resumed
        deployed.cli("proc resume -n proc1")
        assert client.result(paused_call.call_id, 30) == "Do this: paused"
        # When restarted, a new worker process replaces the old one
        (before,) = [w["pid"] for w in _workers(deployed)]
        deployed.cli("proc restart -n proc1")
        wait_for(
            lambda: [w["pid"] for w in _workers(deployed)] not in ([before], []),
            30,
            "a new worker after restart",
        )
        assert client.result(client.send(THIS, ["again"]).call_id, 30) == "Do this: again"


def test_agent_restarts_a_killed_worker(deployed: Stack) -> None:
    # When its worker is killed with SIGKILL
    (pid,) = [w["pid"] for w in _workers(deployed)]
    os.kill(pid, signal.SIGKILL)
    # Then the agent starts another, and calls work again
    wait_for(
        lambda: [w["pid"] for w in _workers(deployed)] not in ([pid], []),
        30,
        "a replacement worker",
    )
    # And the dead one is recorded as crashed
    wait_for(
        lambda: any(w["name"] == f"a1:proc1:{pid}" for w in _workers(deployed, "crashed")),
        10,
        "the crash recorded",
    )
    with deployed.client() as client:
        assert client.result(client.send(THIS, ["back"]).call_id, 30) == "Do this: back"


def test_agent_rolls_over_to_a_new_commit(deployed: Stack, example_repo: Repo) -> None:
    # When the processor is pointed at the v2 commit
    deployed.cli(f"update processor -n proc1 --branch v2 --commit {example_repo.v2}")

    # Then the agent deploys it and calls run the new code
    def answers_v2() -> bool:
        with deployed.client() as client:
            return bool(client.result(client.send(THIS, ["x"]).call_id, 30) == "Do this v2: x")

    wait_for(answers_v2, DEPLOY_TIMEOUT, "calls answered by the v2 code")
    deployments = deployed.show("processor", "proc1")
    assert deployments["processor"]["status"] == "running"


def test_agents_share_an_unpinned_processor_by_cpus(
    stack: Stack, example_repo: Repo, venv_cache: Path
) -> None:
    # Given a processor that wants 2 workers and two agents with 1 CPU each
    _network(stack, example_repo, concurrency=2)
    stack.start_agent("a1", venv_cache, cpus=1)
    stack.start_agent("a2", venv_cache, cpus=1)
    # Then each runs one worker: together exactly the processor's concurrency
    wait_for(lambda: len(_workers(stack)) == 2, DEPLOY_TIMEOUT, "two workers")
    hosts = sorted(w["name"].split(":")[0] for w in _workers(stack))
    assert hosts == ["a1", "a2"]
    # When the processor wants only one, the agents never run more than that
    stack.cli("update processor -n proc1 -c 1")
    wait_for(lambda: len(_workers(stack)) == 1, 30, "one worker left")


def test_agent_refuses_an_unlisted_repo(stack: Stack, example_repo: Repo, venv_cache: Path) -> None:
    # Given an agent that only trusts another host's repositories
    _network(stack, example_repo)
    stack.start_agent("a1", venv_cache, allowed="https://git.example.org/*")
    # Then the processor is refused, and the listing says why
    wait_for(lambda: _status(stack) == "refused", 30, "the refusal")
    table = stack.cli("ls processors")
    assert "allowed_repos" in table
    assert not _workers(stack)


def test_agent_reports_a_broken_repo_url(stack: Stack, venv_cache: Path) -> None:
    # Given a processor whose repository does not exist
    stack.cli("add queue -n pyfi.queue1")
    stack.cli("add processor -n proc1 -g file:///no/such/repo.git -m pyfi_examples.sample")
    stack.cli(f"add socket -n {THIS} -q pyfi.queue1 -pn proc1 -t do_this")
    agent = stack.start_agent("a1", venv_cache)
    # Then it is failed with a one-line reason, and the agent keeps running
    wait_for(lambda: _status(stack) == "failed", 60, "the failure")
    reason = stack.show("processor", "proc1")["processor"]["status_reason"]
    assert "/no/such/repo.git" in reason
    assert "\n" not in reason
    assert agent.process.poll() is None


def _calls(stack: Stack, socket: str, state: str) -> list[dict]:
    page = json.loads(stack.cli(f"ls calls --socket {socket} --json"))
    return [c for c in page["calls"] if c["state"] == state]


def test_agent_killed_worker_mid_call_completes_after_restart(deployed: Stack) -> None:
    # Given a slow socket, picked up by a restart of the processor's workers
    deployed.cli("add socket -n slow.sock -q pyfi.queue1 -pn proc1 -t slow")
    (old,) = [w["pid"] for w in _workers(deployed)]
    deployed.cli("proc restart -n proc1")

    def only_new_worker() -> bool:
        pids = [w["pid"] for w in _workers(deployed)]
        return len(pids) == 1 and old not in pids

    wait_for(only_new_worker, 60, "the restarted worker alone")
    with deployed.client() as client:
        # And a call in progress on it
        call = client.send("slow.sock", ["in flight"], {"seconds": 3})
        wait_for(lambda: _calls(deployed, "slow.sock", "running"), 30, "the call running")
        (pid,) = [w["pid"] for w in _workers(deployed)]
        # When the worker is killed with SIGKILL mid-call
        os.kill(pid, signal.SIGKILL)
        # Then the agent restarts a worker and the call completes
        assert client.result(call.call_id, 90) == "in flight"


def test_agent_rolls_over_without_losing_a_message(deployed: Stack, example_repo: Repo) -> None:
    # Given a stream of calls, half sent before and half after a commit change
    with deployed.client() as client:
        calls = [client.send(THIS, [n]) for n in range(15)]
        deployed.cli(f"update processor -n proc1 --branch v2 --commit {example_repo.v2}")
        calls += [client.send(THIS, [n]) for n in range(15, 30)]
        # Then every call completes, on the old code or the new
        results = [client.result(c.call_id, DEPLOY_TIMEOUT) for c in calls]
    assert [r.rsplit(": ", 1)[1] for r in results] == [str(n) for n in range(30)]
    assert {r.rsplit(": ", 1)[0] for r in results} <= {"Do this", "Do this v2"}
