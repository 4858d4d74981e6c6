"""Failures on the mesh: retries, dead letters, replay, poison messages and crashes."""

from __future__ import annotations

import json
import time

import pytest

from pyfi.broker import Broker
from pyfi.message import derived_id
from tests.acceptance.mesh import PROBES, Stack, wait_for

pytestmark = pytest.mark.slow


def _probe_processor(stack: Stack, retries: int = 0) -> None:
    stack.cli("add queue -n fq")
    stack.cli(
        f"add processor -n probe -g file:///probes -m probe -c 2 -r {retries} --retry-delay 1"
    )


def _dead_letters(stack: Stack, socket: str) -> list[dict]:
    done = stack.run_flow("dlq", "ls", "--socket", socket, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_mesh_retries_with_backoff_then_succeeds(stack: Stack) -> None:
    # Given a function that fails twice, on a processor allowing 2 retries
    _probe_processor(stack, retries=2)
    stack.cli("add socket -n flaky -q fq -pn probe -t flaky")
    stack.start_worker("probe", path=PROBES)
    # When it is called
    started = time.monotonic()
    with stack.client() as client:
        call = client.send("flaky", ["v"])
        value = client.result(call.call_id, 30)
    # Then the third attempt succeeds, after broker-held delays of 1 s and 2 s
    assert value == "ok after 3"
    assert time.monotonic() - started >= 2.9
    assert _dead_letters(stack, "flaky") == []
    # And its one record shows both retries (stored events) and its last run (timestamps)
    shown: dict = {}

    def finished() -> bool:
        nonlocal shown
        done = stack.run_flow("ls", "call", "--id", call.call_id, "--json")
        shown = json.loads(done.stdout) if done.returncode == 0 else {}
        return bool(shown) and shown["call"]["state"] == "finished"

    wait_for(finished, 15, "the call recorded as finished")
    assert shown["call"]["attempt"] == 3
    assert [e["name"] for e in shown["events"]] == [
        "retry", "retry", "received", "prerun", "postrun"
    ]  # fmt: skip
    assert [e["id"] is not None for e in shown["events"]] == [True, True, False, False, False]


def test_mesh_exhausted_retries_dead_letter_then_replay(stack: Stack) -> None:
    # Given an always-failing function with one retry
    _probe_processor(stack, retries=1)
    stack.cli("add socket -n breaks -q fq -pn probe -t broken")
    stack.start_worker("probe", path=PROBES)
    # When it is called
    with stack.client() as client:
        call = client.send("breaks", ["z"])
        with pytest.raises(Exception, match="broken on 'z'"):
            client.result(call.call_id, 30)
    # Then the call is in the dead-letter queue with its error, after 2 attempts
    letters = _dead_letters(stack, "breaks")
    assert [(x["id"], x["error"]["type"], x["message"]["attempt"]) for x in letters] == [
        (call.call_id, "ValueError", 2)
    ]
    # And listing did not consume it
    assert len(_dead_letters(stack, "breaks")) == 1
    # When it is replayed
    replay = stack.run_flow("dlq", "replay", "--socket", "breaks", "--id", call.call_id)
    assert replay.stdout.strip() == "Replayed 1 call(s) to breaks"
    # Then it ran again (two more attempts) and is dead again, once
    wait_for(lambda: _dead_letters(stack, "breaks"), 20, "the replayed call dying again")
    assert [x["id"] for x in _dead_letters(stack, "breaks")] == [call.call_id]


def test_mesh_replay_unknown_id_is_user_error(stack: Stack) -> None:
    _probe_processor(stack)
    stack.cli("add socket -n breaks -q fq -pn probe -t broken")
    done = stack.run_flow("dlq", "replay", "--socket", "breaks", "--id", "nope")
    assert done.returncode == 2
    assert done.stderr.startswith("Error: no dead letter 'nope' on socket breaks")


def test_mesh_poison_message_is_dead_lettered_and_worker_lives(stack: Stack) -> None:
    # Given a running worker
    _probe_processor(stack)
    stack.cli("add socket -n echo -q fq -pn probe -t identity")
    worker = stack.start_worker("probe", path=PROBES)
    # When bytes that are no pyfi envelope land in its socket's queue
    with stack.client() as client:
        route = client.route("echo")
        broker = Broker(stack.settings.broker_url)
        broker.declare(route)
        broker.publish_to_queue(route.queue, b"\x00not json{", {})
        broker.publish_to_queue(route.queue, b'{"socket": 1}', {})
        broker.close()
        # Then the worker keeps serving calls
        assert client.result(client.send("echo", [42]).call_id, 30) == 42
    assert worker.process.poll() is None
    # And both messages are dead letters with a clear reason
    # (the other pool thread may still be writing its dead letter)
    wait_for(lambda: len(_dead_letters(stack, "echo")) >= 2, 10, "two dead letters")
    reasons = sorted(x["reason"] for x in _dead_letters(stack, "echo"))
    assert reasons == [
        "undecodable message: the body is not JSON: Expecting value: line 1 column 1 (char 0)",
        "undecodable message: the field 'call_id' is missing or not a string",
    ]


def test_mesh_error_plug_routes_failure_as_data(stack: Stack) -> None:
    # Given an ERROR plug from a failing socket to a handler
    _probe_processor(stack)
    stack.cli("add socket -n breaks -q fq -pn probe -t broken")
    stack.cli("add socket -n handler -q fq -pn probe -t handle_error")
    stack.cli("add plug -n on.error -q fq -s breaks -t handler --type ERROR")
    stack.start_worker("probe", path=PROBES)
    # When the failing socket is called
    with stack.client() as client:
        call = client.send("breaks", ["q"])
        # Then the handler receives the failure's type and message
        handled = client.result(derived_id(call.call_id, "on.error"), 30)
    assert handled == "handled ValueError: broken on 'q'"


def test_mesh_killed_worker_call_completes_once_after_restart(stack: Stack) -> None:
    # Given a slow call in progress on a worker
    _probe_processor(stack)
    stack.cli("add socket -n slow -q fq -pn probe -t slow_once")
    stack.cli("add socket -n after -q fq -pn probe -t identity")
    stack.cli("add plug -n slow.after -q fq -s slow -t after")
    worker = stack.start_worker("probe", path=PROBES, concurrency=1)
    with stack.client() as client:
        call = client.send("slow", ["crash-me"])
        wait_for(lambda: stack.traces("slow_started"), 20, "the slow call starting")
        # When the worker is killed with SIGKILL mid-call
        worker.kill()
        assert stack.traces("slow_finished") == []
        # And a new worker starts
        stack.start_worker("probe", path=PROBES, concurrency=1)
        # Then the call completes, and its downstream call happens
        assert client.result(call.call_id, 60) == "crash-me"
        assert client.result(derived_id(call.call_id, "slow.after"), 30) == "crash-me"
    assert stack.traces("slow_finished") == ["crash-me"]
