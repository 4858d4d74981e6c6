"""The flow engine on a real (SQLite) result backend, without workers.

Each test plays the workers' part by hand: it takes the messages the engine
publishes and advances them with a value, so the order of completions,
redeliveries and duplicates is under the test's control.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyfi.backend import open_backend
from pyfi.broker.topology import SocketRoute
from pyfi.errors import MessageDecodeError
from pyfi.message import Message, new_id
from pyfi.workflow.engine import FlowDriver, flow_call_id
from pyfi.workflow.plan import check_node, count_calls

ROUTE = {"socket": "s", "exchange": "q", "exchange_type": "direct", "durable": True}


def call(node_id: str, *args: Any, socket: str = "s", into: Any = None) -> dict[str, Any]:
    return {
        "kind": "call",
        "id": node_id,
        "socket": socket,
        "route": {**ROUTE, "socket": socket},
        "args": list(args),
        "kwargs": {},
        "into": into,
    }


class Recorder:
    """A driver whose published messages are kept in a list."""

    def __init__(self, backend: Any) -> None:
        self.sent: list[Message] = []
        self.routes: list[SocketRoute] = []
        self.driver = FlowDriver(backend, self._publish)
        self.backend = backend

    def _publish(self, message: Message, route: SocketRoute) -> None:
        self.sent.append(message)
        self.routes.append(route)

    def take(self) -> list[Message]:
        sent, self.sent = self.sent, []
        return sent

    def outcome(self, tracking_id: str) -> Any:
        stored = self.backend.get(tracking_id)
        return None if stored is None else json.loads(stored)


@pytest.fixture
def flows(tmp_path: Path) -> Iterator[Recorder]:
    backend = open_backend(f"sqlite:///{tmp_path / 'results.sqlite'}")
    yield Recorder(backend)
    backend.close()


def test_pipeline_sends_one_step_at_a_time_and_stores_the_last_result(flows: Recorder) -> None:
    # Given a three-step pipeline started without input
    plan = {"kind": "pipeline", "id": "0", "steps": [call("0.0", 1), call("0.1"), call("0.2")]}
    run = new_id()
    flows.driver.begin(plan, run)
    # Then only the first step is sent, with its bound arguments only
    [first] = flows.take()
    assert (first.call_id, first.args, first.parent_id) == (flow_call_id(run, "0.0"), [1], None)
    # When each step finishes, the next one gets its value appended, and its parent is the step
    flows.driver.advance(first, "a")
    [second] = flows.take()
    assert (second.args, second.parent_id) == (["a"], first.call_id)
    flows.driver.advance(second, "b")
    [third] = flows.take()
    assert flows.outcome(run) is None
    flows.driver.advance(third, "c")
    # Then the flow's outcome is the last step's value, under the run's id
    assert flows.take() == []
    assert flows.outcome(run) == {"status": "ok", "value": "c"}


def test_input_is_appended_passed_by_keyword_or_dropped(flows: Recorder) -> None:
    # Given a parallel whose three steps take their input three ways
    plan = {
        "kind": "parallel",
        "id": "0",
        "steps": [call("0.0", 1), call("0.1", 1, into="value"), call("0.2", 1, into=False)],
    }
    # When it starts with an input
    flows.driver.begin(plan, new_id(), {"in": True})
    appended, keyword, dropped = flows.take()
    # Then each step's arguments follow its choice
    assert (appended.args, appended.kwargs) == ([1, {"in": True}], {})
    assert (keyword.args, keyword.kwargs) == ([1], {"value": {"in": True}})
    assert (dropped.args, dropped.kwargs) == ([1], {})


def test_parallel_gathers_in_step_order_and_fires_once(flows: Recorder) -> None:
    # Given a parallel of three inside a pipeline
    group = {"kind": "parallel", "id": "0.0", "steps": [call(f"0.0.{i}") for i in range(3)]}
    plan = {"kind": "pipeline", "id": "0", "steps": [group, call("0.1", socket="after")]}
    run = new_id()
    flows.driver.begin(plan, run)
    branches = flows.take()
    assert len(branches) == 3
    # When the branches finish in reverse order
    flows.driver.advance(branches[2], "two")
    flows.driver.advance(branches[1], "one")
    assert flows.take() == []
    flows.driver.advance(branches[0], "zero")
    # Then the next step is sent once, with the values in step order
    [after] = flows.take()
    assert after.socket == "after"
    assert after.args == [["zero", "one", "two"]]
    # And a branch finishing again (a duplicate delivery of another message) fires nothing
    flows.driver.advance(branches[1], "one")
    assert flows.take() == []


def test_a_redelivered_firing_branch_fires_again_with_the_same_ids(flows: Recorder) -> None:
    # Given a funnel whose join has fired, but the firing worker crashed before
    # forgetting the join (the engine forgets it only after publishing)
    plan = {
        "kind": "funnel",
        "id": "0",
        "steps": [call("0.0"), call("0.1")],
        "callback": call("0.cb", socket="cb"),
    }
    run = new_id()
    flows.driver.begin(plan, run)
    first, second = flows.take()
    flows.driver.advance(first, 1)
    values = flows.backend.join(run, "flow:0", "1", "2", ["0", "1"], second.call_id, 60)
    assert values == {"0": "1", "1": "2"}  # claimed by the second branch, callback not sent
    # When the second branch's message is redelivered and advanced
    flows.driver.advance(second, 2)
    # Then the callback is sent, with the id any earlier sending had
    [callback] = flows.take()
    assert callback.call_id == flow_call_id(run, "0.cb")
    assert callback.args == [[1, 2]]
    assert callback.parent_id == second.call_id
    # And the callback's result is the flow's
    flows.driver.advance(callback, "done")
    assert flows.outcome(run) == {"status": "ok", "value": "done"}


def test_nested_groups_complete_outwards(flows: Recorder) -> None:
    # Given a parallel whose first step is itself a parallel
    inner = {"kind": "parallel", "id": "0.0", "steps": [call("0.0.0"), call("0.0.1")]}
    plan = {"kind": "parallel", "id": "0", "steps": [inner, call("0.1")]}
    run = new_id()
    flows.driver.begin(plan, run)
    a, b, c = flows.take()
    # When all finish
    for message, value in ((c, "c"), (a, "a"), (b, "b")):
        flows.driver.advance(message, value)
    # Then the result nests like the plan
    assert flows.outcome(run) == {"status": "ok", "value": [["a", "b"], "c"]}


def test_a_failure_is_the_flows_outcome_and_the_first_one_wins(flows: Recorder) -> None:
    # Given a parallel of two that both fail
    plan = {"kind": "parallel", "id": "0", "steps": [call("0.0"), call("0.1")]}
    run = new_id()
    flows.driver.begin(plan, run)
    a, b = flows.take()
    # When both fail, one after the other
    flows.driver.fail(a, {"type": "ValueError", "message": "first"})
    flows.driver.fail(b, {"type": "KeyError", "message": "second"})
    # Then the flow failed with the first error, naming its call
    outcome = flows.outcome(run)
    assert outcome["status"] == "error"
    assert outcome["error"]["message"] == "first"
    assert outcome["error"]["call_id"] == a.call_id


@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        ("nope", "not a list"),
        ([{"kind": "loop"}], "unknown kind"),
        ([{"kind": "pipeline", "rest": []}], "no steps left"),
        ([{"kind": "parallel", "id": "0", "index": 3, "size": 2}], "bad index"),
        ([{"kind": "pipeline", "rest": [{"kind": "call", "id": "1", "socket": "s"}]}], "route"),
    ],
)
def test_malformed_frames_are_refused(flows: Recorder, frames: Any, reason: str) -> None:
    # Given a message whose flow frames were tampered with
    message = Message.new("s", flow={"frames": []})
    message = Message(**{**message.to_dict(), "flow": {"frames": frames}})
    # When a worker advances it, then it is refused with the reason
    with pytest.raises(MessageDecodeError, match=reason):
        flows.driver.advance(message, 1)


def test_a_malformed_later_step_is_refused_when_the_pipeline_reaches_it(flows: Recorder) -> None:
    # Given a pipeline whose third step was tampered with (no route)
    bad = {"kind": "call", "id": "0.2", "socket": "s"}
    plan = {"kind": "pipeline", "id": "0", "steps": [call("0.0"), call("0.1"), bad]}
    run = new_id()
    flows.driver.begin(plan, run)
    (first,) = flows.take()
    # When the first step finishes, the second is started (only it is looked at)
    flows.driver.advance(first, 1)
    (second,) = flows.take()
    # Then finishing the second, which would start the bad step, is refused
    with pytest.raises(MessageDecodeError, match="route"):
        flows.driver.advance(second, 2)
    assert flows.take() == []


def test_plan_checks_and_counts() -> None:
    # Given a funnel with a nested pipeline and a callback
    inner = {"kind": "pipeline", "id": "0.1", "steps": [call("0.1.0"), call("0.1.1")]}
    plan = {"kind": "funnel", "id": "0", "steps": [call("0.0"), inner], "callback": call("0.cb")}
    # Then it is accepted and makes four calls per run
    assert check_node(plan) is plan
    assert count_calls(plan) == 4
    # And an empty group or a call without a socket is refused
    with pytest.raises(MessageDecodeError, match="no steps"):
        check_node({"kind": "parallel", "id": "0", "steps": []})
    with pytest.raises(MessageDecodeError, match="no socket"):
        check_node({"kind": "call", "id": "0", "route": ROUTE})


def test_decoding_refuses_a_flow_without_frames() -> None:
    # Given an envelope whose flow field is not an object with frames
    body = json.loads(Message.new("s").encode())
    body["flow"] = {"frame": []}
    # Then decoding refuses it
    with pytest.raises(MessageDecodeError, match="'flow'"):
        Message.from_dict(body)
