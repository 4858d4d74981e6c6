"""A worker process under faults: its broker cut or gone silent, signals while it starts, exits.

The broker is the machine's real RabbitMQ, reached through a relay of the
test's own (:mod:`tests.relay`) that the test cuts; the service itself is
never touched.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from contextlib import nullcontext
from urllib.parse import urlsplit

import pytest

from pyfi.worker.signals import held_for_spawn
from tests.acceptance.mesh import FLOW, PROBES, Stack, WorkerProcess, wait_for
from tests.conftest import NEEDS_ALL_SERVICES
from tests.relay import TcpRelay

pytestmark = pytest.mark.slow

REAL = [pytest.param("real", marks=NEEDS_ALL_SERVICES)]
EMBEDDED = ["embedded"]


def _probe_processor(stack: Stack) -> None:
    stack.cli("add queue -n fq")
    stack.cli("add processor -n probe -g file:///probes -m probe -c 2")
    stack.cli("add socket -n slow -q fq -pn probe -t slow_once")


def _spawn(
    stack: Stack, *options: str, broker: str | None = None, hold_signals: bool = False
) -> WorkerProcess:
    """A `flow worker start` process of ``probe``, not waited for."""
    log = stack.tmp / f"worker-{len(stack.workers)}.log"
    env = {**os.environ, **stack.env, **({"PYFI_BROKER": broker} if broker else {})}
    command = [*FLOW, "worker", "start", "-p", "probe", "--path", str(PROBES), "-c", "2"]
    with log.open("wb") as output, held_for_spawn() if hold_signals else nullcontext():
        process = subprocess.Popen(
            [*command, *options], stdout=output, stderr=subprocess.STDOUT, env=env
        )
    worker = WorkerProcess(process, log)
    stack.workers.append(worker)
    return worker


def _relay_to_broker(stack: Stack) -> TcpRelay:
    parts = urlsplit(stack.env["PYFI_BROKER"])
    return TcpRelay(parts.hostname or "127.0.0.1", parts.port or 5672)


@pytest.mark.parametrize("stack", REAL, indirect=True)
def test_worker_rides_out_a_broker_outage_without_losing_or_repeating_a_call(
    stack: Stack,
) -> None:
    # Given a worker whose broker connection runs through a relay
    _probe_processor(stack)
    relay = _relay_to_broker(stack)
    try:
        worker = _spawn(stack, broker=relay.url_of(stack.env["PYFI_BROKER"]))
        worker.wait_ready()
        with stack.client() as client:
            # When calls are running (for longer than the outage lasts, and more are
            # waiting in the worker) and the broker goes away for 3 s meanwhile
            sent = [client.send("slow", [f"before-{n}"], {"seconds": 6}) for n in range(4)]
            wait_for(lambda: len(stack.traces("slow_started")) == 2, 20, "two calls starting")
            relay.set_up(False)
            sent += [client.send("slow", [f"during-{n}"], {"seconds": 0.1}) for n in range(10)]
            time.sleep(3)
            relay.set_up(True)
            sent += [client.send("slow", [f"after-{n}"], {"seconds": 0.1}) for n in range(10)]
            # Then every call gets its result
            values = client.results([call.call_id for call in sent], 90)
        alive, log = worker.process.poll() is None, worker.output()
    finally:
        relay.stop()
    assert values == [call.args[0] for call in sent]
    # And the worker never exited: it said once that it lost the broker, once that it is back
    assert alive
    assert log.count("lost the message broker") == 1, log
    assert log.count("reconnected to the message broker") == 1, log
    # And no call ran twice: those under way at the cut finished first, and their
    # redeliveries found them done; those still waiting in the worker ran once
    started = stack.traces("slow_started")
    assert sorted(started) == sorted(str(value) for value in values)
    reconnected = re.search(r"reconnected to the message broker .* after ([\d.]+)s", log)
    consuming = re.search(r"consuming 1 socket\(s\) again, ([\d.]+)s after the loss", log)
    assert reconnected is not None
    assert consuming is not None
    print(
        f"outage of 3 s: reconnected {reconnected.group(1)} s after the loss, consuming "
        f"again at {consuming.group(1)} s (calls under way done)"
    )


@pytest.mark.parametrize("stack", REAL, indirect=True)
def test_worker_notices_a_broker_gone_silent_by_its_heartbeats(stack: Stack) -> None:
    # Given a worker with 2 s heartbeats whose broker connection runs through a relay
    _probe_processor(stack)
    relay = _relay_to_broker(stack)
    try:
        worker = _spawn(stack, "--heartbeat", "2", broker=relay.url_of(stack.env["PYFI_BROKER"]))
        worker.wait_ready()
        with stack.client() as client:
            assert client.result(client.send("slow", ["first"], {"seconds": 0}).call_id, 30) == (
                "first"
            )
            # When its connection goes silent without a close (half-open)
            relay.freeze()
            silent_at = time.monotonic()
            call = client.send("slow", ["second"], {"seconds": 0})
            # Then the worker notices, reconnects, and the call sent meanwhile is answered
            assert client.result(call.call_id, 60) == "second"
            answered_s = time.monotonic() - silent_at
        alive, log = worker.process.poll() is None, worker.output()
    finally:
        relay.stop()
    assert alive
    assert "Too many heartbeats missed" in log
    print(f"half-open connection: call answered {answered_s:.1f} s after the path went silent")


@pytest.mark.parametrize("stack", REAL, indirect=True)
def test_a_worker_that_gives_up_on_the_broker_says_why_and_keeps_its_records(
    stack: Stack,
) -> None:
    # Given a worker allowed to try a lost broker for 2 s, that has run one call
    _probe_processor(stack)
    relay = _relay_to_broker(stack)
    try:
        worker = _spawn(
            stack, "--reconnect-for", "2", broker=relay.url_of(stack.env["PYFI_BROKER"])
        )
        worker.wait_ready()
        with stack.client() as client:
            call = client.send("slow", ["kept"], {"seconds": 0})
            assert client.result(call.call_id, 30) == "kept"
        # When the broker goes away for good
        relay.set_up(False)
        code = worker.process.wait(timeout=60)
    finally:
        relay.stop()
    # Then it exits with an error, its last line saying why
    assert code == 1
    lines = [line for line in worker.output().splitlines() if " pyfi." in line]
    assert "lost the message broker" in worker.output()
    assert re.search(r"stopped: cannot reach the message broker .* for 2s", lines[-1]), lines
    # And the call it ran is recorded as finished
    shown = stack.run_flow("ls", "call", "--id", call.call_id, "--json")
    assert json.loads(shown.stdout)["call"]["state"] == "finished"


@pytest.mark.parametrize("stack", EMBEDDED, indirect=True)
def test_a_pause_sent_as_the_worker_is_spawned_is_honoured_not_fatal(stack: Stack) -> None:
    # Given a worker spawned as an agent spawns it, signals held until its handlers exist
    _probe_processor(stack)
    worker = _spawn(stack, hold_signals=True)
    # When it is paused at once, before it has started
    worker.process.send_signal(signal.SIGUSR1)
    # Then it starts, paused, and runs no call
    worker.wait_ready(marker="started paused")
    with stack.client() as client:
        call = client.send("slow", ["held"], {"seconds": 0})
        time.sleep(2)
        assert stack.traces("slow_started") == []
        assert worker.process.poll() is None
        # And once resumed it runs the call
        worker.process.send_signal(signal.SIGUSR2)
        assert client.result(call.call_id, 30) == "held"
    assert worker.stop() == 0


@pytest.mark.parametrize("stack", EMBEDDED, indirect=True)
def test_worker_log_lines_name_their_process_and_the_exit_its_cause(stack: Stack) -> None:
    # Given a running worker that has run a call
    _probe_processor(stack)
    worker = _spawn(stack)
    worker.wait_ready()
    with stack.client() as client:
        assert client.result(client.send("slow", ["x"], {"seconds": 0}).call_id, 30) == "x"
    # When it is stopped with SIGTERM
    assert worker.stop() == 0
    # Then each of its log lines carries its pid, and the last says why it stopped
    lines = [line for line in worker.output().splitlines() if " pyfi." in line]
    pid = worker.process.pid
    assert lines
    assert all(re.search(rf" pyfi\.[\w.]+\[{pid}\]: ", line) for line in lines), lines
    assert lines[-1].endswith("worker for processor probe stopped: stop requested (SIGTERM)")
