"""A processor's ``timelimit``: its calls run in child processes, killed at the limit.

An in-process worker on each broker (embedded, RabbitMQ), serving the
functions of ``tests/processors/timeboxed.py`` under a one-second limit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pyfi.broker.topology import SocketRoute
from pyfi.client.calls import Client
from pyfi.config import Settings, load_settings
from pyfi.db import schema
from pyfi.db.session import Database
from pyfi.dlq import list_dead_letters
from pyfi.errors import CallFailed
from pyfi.wiring import ProcessorSpec, SocketSpec, spec_to_json
from pyfi.worker.factory import build_worker
from pyfi.worker.telemetry import Telemetry
from pyfi.worker.worker import Worker, WorkerOptions
from tests.acceptance.mesh import PROBES
from tests.conftest import Flow

TASKS = ("where", "nap", "hold_the_gil", "exit_at_once", "segfault", "unsendable")
# Long enough for a worker to start its child and a killed call to be replaced.
WAIT_S = 30


@dataclass
class Limited:
    """A running worker of processor ``p`` (time limit 1 s), and what it reported."""

    settings: Settings
    database: Database
    worker: Worker
    thread: threading.Thread
    probes: Path
    steps: list[tuple[str, str, str]]

    def client(self) -> Client:
        return Client(self.settings, self.database)

    def stop(self) -> None:
        self.worker.stop()
        self.thread.join(WAIT_S)
        assert not self.thread.is_alive()

    def pids(self, kind: str) -> list[int]:
        """The pids that ran the traced function ``kind``."""
        folder = self.probes / kind
        return [int(path.read_text()) for path in folder.iterdir()] if folder.exists() else []


@pytest.fixture
def retries() -> int:
    """How many times the processor retries a failed call (a test parametrizes it)."""
    return 0


@pytest.fixture
def limited(
    retries: int,
    tmp_path: Path,
    sqlite_url: str,
    broker_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Limited]:
    """A worker of processor ``p``: timelimit 1 s, ``retries`` retries without delay."""
    database = Database(sqlite_url)
    schema.upgrade(database)
    flow = Flow(sqlite_url, monkeypatch)
    flow("add", "queue", "-n", "q")
    flow(
        "add", "processor", "-n", "p", "-g", "g", "-m", "timeboxed",
        "--timelimit", "1", "-r", str(retries), "--retry-delay", "0",
    )  # fmt: skip
    for task in TASKS:
        flow("add", "socket", "-n", task, "-q", "q", "-pn", "p", "-t", task)
    probes = tmp_path / "probes"
    monkeypatch.setenv("PYFI_PROBE_DIR", str(probes))  # read by the child processes
    settings = load_settings(
        {
            "database_url": sqlite_url,
            "broker_url": broker_url,
            "backend_url": f"sqlite:///{tmp_path / 'results.sqlite'}",
        },
        {},
    )
    options = WorkerOptions(path=PROBES, install_signals=False, record=False, events=False)
    worker = build_worker(settings, database, "p", options, record_signatures=False)
    steps: list[tuple[str, str, str]] = []
    worker.telemetry = Telemetry(
        "p",
        [lambda step, socket, _call, _outcome, note, _at: steps.append((step, socket.name, note))],
    )
    # A daemon: without time limits, a test's stuck call must not hold the run at exit.
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    assert worker.ready.wait(WAIT_S)
    running = Limited(settings, database, worker, thread, probes, steps)
    yield running
    worker.stop()
    thread.join(WAIT_S)
    database.dispose()


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by its new parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return not stat.parent.parent.exists()  # no /proc here: kill(0) is all we know


def _fails(client: Client, socket: str, args: list[Any]) -> CallFailed:
    """The failure of a call of ``socket`` (it must fail, within WAIT_S)."""
    call = client.send(socket, args)
    with pytest.raises(CallFailed) as failed:
        client.result(call.call_id, WAIT_S)
    return failed.value


def _serves_the_next_call(client: Client) -> None:
    value = client.result(client.send("where", ["next"]).call_id, WAIT_S)
    assert value["args"] == ["next"]


@pytest.mark.parametrize("retries", [1])
def test_a_call_past_its_time_limit_is_killed_retried_by_policy_then_dead_lettered(
    limited: Limited, retries: int
) -> None:
    # Given a processor whose calls may run 1 s, retried once
    with limited.client() as client:
        # When a call sleeps for a minute
        call = client.send("nap", [60])
        with pytest.raises(CallFailed) as failed:
            client.result(call.call_id, WAIT_S)
        # Then it fails with TimeLimitExceeded
        assert failed.value.error_type == "TimeLimitExceeded"
        assert "ran past its time limit of 1s" in failed.value.remote_message
        # And the worker serves the next call
        _serves_the_next_call(client)
    # And the call was retried once, then dead-lettered with its error
    retries = [note for step, socket, note in limited.steps if (step, socket) == ("retry", "nap")]
    assert retries == ["TimeLimitExceeded on attempt 1; retrying in 0s"]
    letters = list_dead_letters(limited.settings.broker_url, "nap")
    assert [(x["id"], x["reason"], x["error"]["type"]) for x in letters] == [
        (call.call_id, "failed after retries", "TimeLimitExceeded")
    ]
    # And both processes that ran it were killed, neither is the worker's
    pids = limited.pids("nap")
    assert len(pids) == 2
    assert os.getpid() not in pids
    assert not any(_alive(pid) for pid in pids)


def test_a_call_stuck_in_c_holding_the_gil_is_killed_at_its_time_limit(
    limited: Limited,
) -> None:
    # Given a processor whose calls may run 1 s
    with limited.client() as client:
        # When a call sleeps 20 s in C without releasing the GIL
        failure = _fails(client, "hold_the_gil", [20])
        # Then it fails with TimeLimitExceeded
        assert failure.error_type == "TimeLimitExceeded"
        # And the worker serves the next call
        _serves_the_next_call(client)
    # And the process that ran it was killed
    [pid] = limited.pids("hold_the_gil")
    assert pid != os.getpid()
    assert not _alive(pid)


@pytest.mark.parametrize("broker_url", ["filesystem"], indirect=True)  # no broker in play
@pytest.mark.parametrize(
    ("socket", "args", "cause"),
    [("exit_at_once", [3], "exited with status 3"), ("segfault", [], "killed by SIGSEGV")],
)
def test_a_call_whose_process_dies_fails_with_the_cause_and_the_next_call_runs(
    limited: Limited, socket: str, args: list[Any], cause: str
) -> None:
    # Given a processor with a time limit
    with limited.client() as client:
        # When the process running a call dies
        failure = _fails(client, socket, args)
        # Then the call fails, saying how it died
        assert failure.error_type == "CallProcessDied"
        assert f"died before it answered: {cause}" in failure.remote_message
        # And the worker serves the next call
        _serves_the_next_call(client)


@pytest.mark.parametrize("broker_url", ["filesystem"], indirect=True)  # no broker in play
def test_a_call_within_its_time_limit_returns_its_value_through_json(limited: Limited) -> None:
    # Given a processor with a time limit
    args = [{"text": "naïve ✓", "ratio": 1.5, "none": None, "flag": True, "nested": [1, [2]]}]
    kwargs = {"big": 2**70, "empty": {}}
    with limited.client() as client:
        # When a call returns within it
        value = client.result(client.send("where", args, kwargs).call_id, WAIT_S)
        # Then its arguments crossed into another process and its value came back
        assert value["args"] == args
        assert value["kwargs"] == kwargs
        assert value["pid"] != os.getpid()
        # And a value JSON cannot carry fails the call, as it does in-thread
        failure = _fails(client, "unsendable", [])
    assert "cannot be sent as JSON" in failure.remote_message


@pytest.mark.parametrize("broker_url", ["filesystem"], indirect=True)  # no broker in play
def test_a_stopped_worker_leaves_no_child_process(limited: Limited) -> None:
    # Given a worker whose child process ran a call
    with limited.client() as client:
        pid = client.result(client.send("where").call_id, WAIT_S)["pid"]
    assert pid != os.getpid()
    assert _alive(pid)
    # When the worker stops
    limited.stop()
    # Then its child process is gone
    assert not _alive(pid)


# A worker's process, reduced to what holds a child: a pool running one call.
HOLDER = """
import sys, threading, time
from pathlib import Path
from pyfi.wiring import spec_from_json
from pyfi.worker.timelimit import TimeLimitedCalls

calls = TimeLimitedCalls(spec_from_json(sys.argv[1]), Path(sys.argv[2]), size=1, limit_s=60)
threading.Thread(target=calls.execute, args=("hold_the_gil", [60], {}), daemon=True).start()
time.sleep(60)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel's parent-death signal")
def test_a_worker_killed_with_sigkill_takes_its_child_stuck_in_c_along(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a process whose child is stuck in C, holding the GIL, for a minute
    socket = SocketSpec(
        name="hold_the_gil",
        id="00000000-0000-0000-0000-000000000001",
        task="hold_the_gil",
        queue="q",
        route=SocketRoute(socket="hold_the_gil", exchange="q"),
        wait=False,
        join_arguments=(),
        outgoing=(),
    )
    spec = ProcessorSpec("p", "timeboxed", 0, 0, (socket,), timelimit_s=60)
    monkeypatch.setenv("PYFI_PROBE_DIR", str(tmp_path))
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, spec_to_json(spec), str(PROBES)])
    try:
        child = _first_pid(tmp_path / "hold_the_gil", holder)
        assert _alive(child)
        # When that process is killed with SIGKILL (no chance to clean up)
        holder.kill()
        holder.wait()
        # Then the child is killed too
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child)
    finally:
        holder.kill()
        holder.wait()


def _first_pid(folder: Path, holder: subprocess.Popen[bytes]) -> int:
    """The pid the traced function left in ``folder``, once it has started."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and holder.poll() is None:
        traces = list(folder.iterdir()) if folder.exists() else []
        if traces and traces[0].read_text():
            return int(traces[0].read_text())
        time.sleep(0.05)
    raise AssertionError(f"the call never started (holder exit status {holder.poll()})")
