"""The mesh end to end: real `flow worker` processes on the embedded and the real stack."""

from __future__ import annotations

import json
import os
import random
import subprocess
import time

import pytest

from pyfi.errors import CallFailed
from pyfi.message import derived_id, new_id
from tests.acceptance.mesh import FLOW, PROBES, Stack, wait_for

pytestmark = pytest.mark.slow

SOMETHING = "pyfi.processors.sample.do_something"
THIS = "pyfi.processors.sample.do_this"


def _first_flow(stack: Stack) -> None:
    stack.cli("add queue -n pyfi.queue1 -t direct")
    stack.cli("add processor -n proc1 -g file:///examples -m pyfi_examples.sample -c 2")
    stack.cli(f"add socket -n {SOMETHING} -q pyfi.queue1 -pn proc1 -t do_something")
    stack.cli(f"add socket -n {THIS} -q pyfi.queue1 -pn proc1 -t do_this")


def test_mesh_first_flow_task_run(stack: Stack) -> None:
    # Given the reference's first flow and a worker for its processor
    _first_flow(stack)
    stack.start_worker("proc1")
    # When the reference's command is run
    done = stack.run_flow("task", "run", "--socket", THIS, "--data", "['some data']")
    # Then it prints the function's result
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Do this: ['some data']\n"


def test_mesh_task_run_reads_stdin_for_pipes(stack: Stack) -> None:
    # Given the first flow running
    _first_flow(stack)
    stack.start_worker("proc1")
    # When text is piped through one socket and then another, as in the reference
    first = stack.run_flow("task", "run", "-s", SOMETHING, stdin="HI THERE!\n")
    second = stack.run_flow("task", "run", "-s", THIS, stdin=f"{first.stdout.strip()} more\n")
    # Then each stage's output is the next one's input
    assert first.stdout == "Message:HI THERE!\n"
    assert second.stdout == "Do this: Message:HI THERE! more\n"


def test_mesh_three_hop_plug_chain(stack: Stack) -> None:
    # Given s1 -> s2 -> s3 wired by plugs
    _first_flow(stack)
    stack.cli("add socket -n hop3 -q pyfi.queue1 -pn proc1 -t do_something")
    stack.cli(f"add plug -n p12 -q pyfi.queue1 -s {SOMETHING} -t {THIS}")
    stack.cli(f"add plug -n p23 -q pyfi.queue1 -s {THIS} -t hop3")
    stack.start_worker("proc1")
    # When s1 is called
    with stack.client() as client:
        first = client.send(SOMETHING, ["x"])
        # Then the result flows to the end of the chain, where its call id is derived
        last = derived_id(derived_id(first.call_id, "p12"), "p23")
        assert client.result(last, 30) == "Message:Do this: Message:x"
        assert client.result(first.call_id, 5) == "Message:x"


def _join_network(stack: Stack) -> None:
    stack.cli("add queue -n jq")
    stack.cli("add processor -n probe -g file:///probes -m probe -c 4")
    stack.cli("add socket -n src.one -q jq -pn probe -t identity")
    stack.cli("add socket -n src.two -q jq -pn probe -t identity")
    stack.cli("add socket -n adder -q jq -pn probe -t add_two --wait")
    stack.cli("add plug -n to.one -q jq -s src.one -t adder -a one")
    stack.cli("add plug -n to.two -q jq -s src.two -t adder -a two")


@pytest.mark.parametrize("order", ["one-first", "two-first"])
def test_mesh_join_fires_once_in_either_order(stack: Stack, order: str) -> None:
    # Given add_two fed by two plugs and waiting for both
    _join_network(stack)
    stack.start_worker("probe", path=PROBES)
    sources = [("src.one", 1), ("src.two", 10)]
    if order == "two-first":
        sources.reverse()
    # When both sources are called in one flow run, the second only after the first landed
    tracking = new_id()
    with stack.client() as client:
        for socket, value in sources:
            sent = client.send(socket, [value], tracking_id=tracking)
            client.result(sent.call_id, 30)
        # Then add_two ran once, with both values
        assert client.result(derived_id(tracking, "adder", "join"), 30) == 11
    assert stack.traces("add_two") == ["1|10"]


def test_mesh_200_interleaved_joins_each_fire_once(stack: Stack) -> None:
    # Given the join network and two workers
    _join_network(stack)
    stack.start_worker("probe", path=PROBES)
    stack.start_worker("probe", path=PROBES)
    # When 200 runs deliver their two arguments in shuffled order
    runs = {new_id(): (i, 1000 * i) for i in range(200)}
    sends = [(t, "src.one", a) for t, (a, _b) in runs.items()]
    sends += [(t, "src.two", b) for t, (_a, b) in runs.items()]
    random.Random(7).shuffle(sends)
    with stack.client() as client:
        for tracking, socket, value in sends:
            client.send(socket, [value], tracking_id=tracking)
        # Then every run fired once, with its own two arguments
        for tracking, (a, b) in runs.items():
            assert client.result(derived_id(tracking, "adder", "join"), 60) == a + b
    wait_for(lambda: len(stack.traces("add_two")) >= 200, 10, "200 add_two traces")
    assert sorted(stack.traces("add_two")) == sorted(f"{a}|{b}" for a, b in runs.values())


def test_mesh_failed_call_surfaces_remote_error(stack: Stack) -> None:
    # Given a socket whose function raises, with no retries
    stack.cli("add queue -n fq")
    stack.cli("add processor -n probe -g file:///probes -m probe")
    stack.cli("add socket -n breaks -q fq -pn probe -t broken")
    stack.start_worker("probe", path=PROBES)
    # When it is called from the shell
    done = stack.run_flow("task", "run", "-s", "breaks", "--data", '"x"')
    # Then the remote error is printed on one line and the exit code is 1
    assert done.returncode == 1
    assert done.stderr.strip() == "Error: remote ValueError: broken on 'x'"
    # And from Python the error carries the remote type and traceback
    with stack.client() as client, pytest.raises(CallFailed) as failure:
        client.result(client.send("breaks", ["y"]).call_id, 30)
    assert failure.value.error_type == "ValueError"
    assert "broken on 'y'" in (failure.value.traceback or "")
    # And a call that waits for its value in one step raises the same
    with stack.client() as client, pytest.raises(CallFailed, match="broken on 'z'"):
        client.call("breaks", ["z"], timeout_s=30)


def test_mesh_calls_that_wait_for_their_value_in_one_step(stack: Stack) -> None:
    # Given the first flow and a worker
    _first_flow(stack)
    stack.start_worker("proc1")
    # When calls are made one after another, each waiting for its value
    from pyfi.client.functions import Socket

    with stack.client() as client:
        this = Socket(THIS, client=client)
        values = [this.call(f"v{n}") for n in range(20)]
        direct = client.call(SOMETHING, ["direct"], timeout_s=30)
        # And a call mixes with confirmed sends on the same client
        sent = client.send(THIS, ["sent"])
        assert client.result(sent.call_id, 30) == "Do this: sent"
    # Then each returns its own call's value
    assert values == [f"Do this: v{n}" for n in range(20)]
    assert direct == "Message:direct"


def test_mesh_calls_are_recorded_with_their_events(stack: Stack) -> None:
    # Given the first flow with a plug, and a worker
    _first_flow(stack)
    stack.cli(f"add plug -n p12 -q pyfi.queue1 -s {SOMETHING} -t {THIS}")
    stack.start_worker("proc1")
    # When one call runs (and its plug delivers a second)
    with stack.client() as client:
        first = client.send(SOMETHING, ["rec"])
        second = derived_id(first.call_id, "p12")
        client.result(second, 30)
    # Then both calls are recorded as finished, linked by parent and tracking id
    deadline = time.monotonic() + 15
    shown: dict = {}
    while time.monotonic() < deadline:
        done = stack.run_flow("ls", "call", "--id", second, "--json")
        shown = json.loads(done.stdout) if done.returncode == 0 else {}
        if shown and shown["call"]["state"] == "finished":
            break
        time.sleep(0.2)
    assert shown["call"]["parent_id"] == first.call_id
    assert shown["call"]["tracking_id"] == first.tracking_id
    assert [e["name"] for e in shown["events"]] == ["received", "prerun", "postrun"]
    listed = json.loads(
        stack.run_flow("ls", "calls", "--tracking", first.tracking_id, "--json").stdout
    )
    assert {c["id"] for c in listed["calls"]} == {first.call_id, second}
    # And the result can be looked up with the record
    with_result = json.loads(
        stack.run_flow("ls", "call", "--id", second, "--result", "--json").stdout
    )
    assert with_result["result"] == {"status": "ok", "value": "Do this: Message:rec"}


def test_mesh_listen_sees_a_call_live(stack: Stack) -> None:
    # Given the first flow running and `flow listen` on its room's task channel
    _first_flow(stack)
    stack.start_worker("proc1")
    listener = subprocess.Popen(
        [
            *FLOW,
            "listen",
            "--name",
            "pyfi.queue1.proc1",
            "--channel",
            "task",
            "--json",
            "--count",
            "3",
            "--timeout",
            "30",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **stack.env},
    )
    assert listener.stderr is not None
    assert listener.stderr.readline().startswith("Listening to")
    # When a call runs
    with stack.client() as client:
        call = client.send(THIS, ["live"])
        client.result(call.call_id, 30)
    # Then the listener printed its lifecycle, in order, as JSON
    out, _err = listener.communicate(timeout=30)
    events = [json.loads(line) for line in out.splitlines()]
    assert [(e["state"], e["call_id"]) for e in events] == [
        ("received", call.call_id),
        ("running", call.call_id),
        ("postrun", call.call_id),
    ]
    assert {e["room"] for e in events} == {"pyfi.queue1.proc1"}


def test_mesh_task_run_nowait_and_timeout(stack: Stack) -> None:
    # Given the first flow with no worker running yet
    _first_flow(stack)
    # When a call is sent with --nowait
    sent = stack.run_flow("task", "run", "-s", THIS, "--data", '"later"', "--nowait")
    # Then its id is printed at once
    assert sent.returncode == 0, sent.stderr
    call_id = sent.stdout.strip()
    # And waiting with a short timeout fails with one clear line, exit 1
    waited = stack.run_flow("task", "run", "-s", THIS, "--data", '"x"', "--timeout", "0.5")
    assert waited.returncode == 1
    assert "no result for call" in waited.stderr
    assert "after 0.5s" in waited.stderr
    # And once a worker runs, the queued call completes (nothing was lost)
    stack.start_worker("proc1")
    with stack.client() as client:
        assert client.result(call_id, 30) == "Do this: later"


def test_mesh_sigterm_drains_in_flight_calls(stack: Stack) -> None:
    # Given a slow call in progress
    stack.cli("add queue -n sq")
    stack.cli("add processor -n probe -g file:///probes -m probe -c 1")
    stack.cli("add socket -n slow -q sq -pn probe -t slow_once")
    worker = stack.start_worker("probe", path=PROBES, concurrency=1)
    with stack.client() as client:
        call = client.send("slow", ["drain-me"])
        wait_for(lambda: stack.traces("slow_started"), 20, "the slow call starting")
        # When the worker gets SIGTERM
        code = worker.stop(timeout=30)
        # Then it finished the call, stored its result and exited cleanly
        assert code == 0, worker.output()
        assert client.result(call.call_id, 1) == "drain-me"
    assert "stopped" in worker.output()
    # And a new worker does not run it again (it was acked)
    stack.start_worker("probe", path=PROBES, concurrency=1)
    time.sleep(1)
    assert stack.traces("slow_started") == ["drain-me"]


def test_mesh_fanout_queue_reaches_every_socket_and_topic_routes_by_name(stack: Stack) -> None:
    # Given two sockets on a fanout queue object and one on a topic queue object
    stack.cli("add queue -n fan -t fanout")
    stack.cli("add queue -n top -t topic")
    stack.cli("add processor -n proc1 -g file:///examples -m pyfi_examples.sample -c 2")
    stack.cli("add socket -n fan.a -q fan -pn proc1 -t do_something")
    stack.cli("add socket -n fan.b -q fan -pn proc1 -t do_this")
    stack.cli("add socket -n top.c -q top -pn proc1 -t do_this")
    stack.start_worker("proc1")
    with stack.client() as client:
        # When one call is sent to fan.a
        call = client.send("fan.a", ["x"])
        # Then fan.a ran it, and fan.b ran its own copy under a derived id
        assert client.result(call.call_id, 30) == "Message:x"
        assert client.result(derived_id(call.call_id, "fan.b"), 30) == "Do this: x"
        # And a topic queue delivers by socket name like a direct one
        assert client.result(client.send("top.c", ["y"]).call_id, 30) == "Do this: y"
