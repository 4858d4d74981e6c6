"""Agents on one machine: deploy from git, supervise workers, obey `flow proc`."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from pathlib import Path

import psutil
import pytest

from pyfi.wiring import spec_from_json
from tests.acceptance.agents import (
    DEPLOY_TIMEOUT,
    THIS,
    Repo,
    network,
    processor_status,
    worker_rows,
)
from tests.acceptance.mesh import Stack, wait_for

# A test may wait for two builds (main, then v2): the suite's 120 s would cut
# the first deploy of a run short on a loaded host, long before DEPLOY_TIMEOUT.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2 * DEPLOY_TIMEOUT)]


@pytest.fixture
def deployed(stack: Stack, example_repo: Repo, venv_cache: Path) -> Stack:
    """The first flow's processor deployed by one agent."""
    network(stack, example_repo)
    stack.start_agent("a1", venv_cache)
    wait_for(lambda: processor_status(stack) == "running", DEPLOY_TIMEOUT, "deploying proc1")
    wait_for(lambda: len(worker_rows(stack)) == 1, 30, "one running worker")
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
    wait_for(lambda: not worker_rows(deployed), 10, "the worker stopping")
    # And a call sent meanwhile waits in its queue
    with deployed.client() as client:
        call = client.send(THIS, ["queued"])
        # When it is started again, the waiting call completes
        deployed.cli("proc start -n proc1")
        assert client.result(call.call_id, 60) == "Do this: queued"
        # When paused, a new call is not taken...
        deployed.cli("proc pause -n proc1")
        wait_for(lambda: worker_rows(deployed, "paused"), 10, "the worker pausing")
        paused_call = client.send(THIS, ["paused"])
        with pytest.raises(Exception, match="no result"):
            client.result(paused_call.call_id, 2)
        # ... until resumed
        deployed.cli("proc resume -n proc1")
        assert client.result(paused_call.call_id, 30) == "Do this: paused"
        # When restarted, a new worker process replaces the old one (the worker's row
        # says running again at the agent's next pass, which may follow the result)
        wait_for(lambda: worker_rows(deployed), 10, "the worker's row running again")
        (before,) = [w["pid"] for w in worker_rows(deployed)]
        deployed.cli("proc restart -n proc1")
        wait_for(
            lambda: [w["pid"] for w in worker_rows(deployed)] not in ([before], []),
            30,
            "a new worker after restart",
        )
        assert client.result(client.send(THIS, ["again"]).call_id, 30) == "Do this: again"


def test_agent_restarts_a_killed_worker(deployed: Stack) -> None:
    # When its worker is killed with SIGKILL
    (pid,) = [w["pid"] for w in worker_rows(deployed)]
    os.kill(pid, signal.SIGKILL)
    # Then the agent starts another, and calls work again
    wait_for(
        lambda: [w["pid"] for w in worker_rows(deployed)] not in ([pid], []),
        30,
        "a replacement worker",
    )
    # And the dead one is recorded as crashed
    wait_for(
        lambda: any(w["name"] == f"a1:proc1:{pid}" for w in worker_rows(deployed, "crashed")),
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
    network(stack, example_repo, concurrency=2)
    stack.start_agent("a1", venv_cache, cpus=1)
    stack.start_agent("a2", venv_cache, cpus=1)
    # Then each runs one worker: together exactly the processor's concurrency
    wait_for(lambda: len(worker_rows(stack)) == 2, DEPLOY_TIMEOUT, "two workers")
    hosts = sorted(w["name"].split(":")[0] for w in worker_rows(stack))
    assert hosts == ["a1", "a2"]
    # When the processor wants only one, the agents never run more than that
    stack.cli("update processor -n proc1 -c 1")
    wait_for(lambda: len(worker_rows(stack)) == 1, 30, "one worker left")


def test_agent_refuses_an_unlisted_repo(stack: Stack, example_repo: Repo, venv_cache: Path) -> None:
    # Given an agent that only trusts another host's repositories
    network(stack, example_repo)
    stack.start_agent("a1", venv_cache, allowed="https://git.example.org/*")
    # Then the processor is refused, and the listing says why
    wait_for(lambda: processor_status(stack) == "refused", 30, "the refusal")
    table = stack.cli("ls processors")
    assert "allowed_repos" in table
    assert not worker_rows(stack)


@pytest.mark.parametrize(
    ("module", "task", "reason"),
    [
        ("subprocess", "getoutput", "processor module 'subprocess' is not a file of its checkout"),
        ("pyfi_examples.sample", "Any", "task 'Any' of module 'pyfi_examples.sample' is imported"),
    ],
)
def test_agent_refuses_code_that_is_not_the_processors_own(
    stack: Stack, example_repo: Repo, venv_cache: Path, module: str, task: str, reason: str
) -> None:
    # Given a processor on an allowed repository whose socket names a standard library
    # function, or a name its module only imports
    stack.cli("add queue -n pyfi.queue1")
    stack.cli(f"add processor -n proc1 -g {example_repo.url} -m {module}")
    stack.cli(f"add socket -n proc1.run -q pyfi.queue1 -pn proc1 -t {task}")
    # When an agent deploys it
    agent = stack.start_agent("a1", venv_cache)

    def refused() -> bool:
        row = stack.show("processor", "proc1")["processor"]
        return row["status"] == "refused" and reason in (row["status_reason"] or "")

    # Then it is refused with the reason on the processor, no worker runs, the agent stays up
    wait_for(refused, 60, "the refusal with its reason")
    assert not worker_rows(stack)
    assert agent.process.poll() is None


def test_agent_reports_a_broken_repo_url(stack: Stack, venv_cache: Path) -> None:
    # Given a processor whose repository does not exist
    stack.cli("add queue -n pyfi.queue1")
    stack.cli("add processor -n proc1 -g file:///no/such/repo.git -m pyfi_examples.sample")
    stack.cli(f"add socket -n {THIS} -q pyfi.queue1 -pn proc1 -t do_this")
    agent = stack.start_agent("a1", venv_cache)
    # Then it is failed with a one-line reason, and the agent keeps running
    wait_for(lambda: processor_status(stack) == "failed", 60, "the failure")
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
    (old,) = [w["pid"] for w in worker_rows(deployed)]
    deployed.cli("proc restart -n proc1")

    def only_new_worker() -> bool:
        pids = [w["pid"] for w in worker_rows(deployed)]
        return len(pids) == 1 and old not in pids

    wait_for(only_new_worker, 60, "the restarted worker alone")
    with deployed.client() as client:
        # And a call in progress on it
        call = client.send("slow.sock", ["in flight"], {"seconds": 3})
        wait_for(lambda: _calls(deployed, "slow.sock", "running"), 30, "the call running")
        (pid,) = [w["pid"] for w in worker_rows(deployed)]
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
