"""Compositions on the mesh: pipeline, parallel and funnel driven by real workers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from pyfi.client.compositions import funnel, parallel, pipeline
from pyfi.client.connection import connect, disconnect
from pyfi.client.functions import Socket
from pyfi.client.functions import Socket as Function
from pyfi.client.results import Result, gather
from pyfi.db import models
from pyfi.db.session import Database
from pyfi.errors import CallFailed, CallTimeout
from pyfi.workflow.engine import flow_call_id
from tests.acceptance.mesh import EXAMPLES, PROBES, ROOT, Stack, wait_for

pytestmark = pytest.mark.slow

SOMETHING = "pyfi.processors.sample.do_something"
THIS = "pyfi.processors.sample.do_this"
RESULT_TIMEOUT_S = 60


def _sample() -> Any:
    """The sample functions themselves, to compute what the mesh should answer."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        from pyfi_examples import sample
    finally:
        sys.path.remove(str(EXAMPLES))
    return sample


@pytest.fixture
def mesh(stack: Stack) -> Iterator[Stack]:
    """The reference's sample sockets plus probe sockets, each with a running worker."""
    stack.cli("add queue -n pyfi.queue1 -t direct")
    stack.cli("add processor -n proc1 -g file:///examples -m pyfi_examples.sample -c 4")
    stack.cli(f"add socket -n {SOMETHING} -q pyfi.queue1 -pn proc1 -t do_something")
    stack.cli(f"add socket -n {THIS} -q pyfi.queue1 -pn proc1 -t do_this")
    stack.cli("add processor -n probe -g file:///probes -m probe -c 4")
    for task in ("identity", "collect", "times", "broken", "slow_once"):
        stack.cli(f"add socket -n probe.{task} -q pyfi.queue1 -pn probe -t {task}")
    stack.start_worker("proc1", concurrency=4)
    stack.start_worker("probe", path=PROBES, concurrency=4)
    connect(stack.settings)
    yield stack
    disconnect()


def test_reference_parallel_workflow_returns_the_nested_result(mesh: Stack) -> None:
    # Given the reference's "Running a Parallel Workflow", as written
    do_something = Function(name=SOMETHING).p
    _pipeline = pipeline(
        [
            do_something("One"),
            do_something("Two"),
            parallel([do_something("Four"), do_something("Five")]),
            do_something("Three"),
        ]
    )
    _parallel = parallel([_pipeline, do_something("Six"), do_something("Seven")])
    _funnel = funnel([do_something("Eight"), _parallel, do_something("Nine")])
    # When the funnel runs with its callback
    result = _funnel(do_something("Four")).get(timeout=RESULT_TIMEOUT_S)
    # Then every value took the path the composition describes
    f = _sample().do_something
    two = f("Two", f("One"))
    piped = f("Three", [f("Four", two), f("Five", two)])
    assert result == f("Four", [f("Eight"), [piped, f("Six"), f("Seven")], f("Nine")])


def test_reference_lambda_example_runs(mesh: Stack) -> None:
    # Given the reference's "Lambda" example, with do_this as well
    do_something, do_this = Function(name=SOMETHING).p, Function(name=THIS).p
    _pipeline = pipeline(
        [
            do_something("One"),
            do_something("Two"),
            parallel([do_this("Four"), do_this("Five")]),
            do_this("Three"),
        ]
    )
    first = _pipeline().get(timeout=RESULT_TIMEOUT_S)
    _parallel = parallel([_pipeline, do_something("Six"), do_something("Seven")])
    _funnel = funnel([do_something("Eight"), _parallel, do_something("Nine")], do_something("A"))
    _funnel2 = funnel([_parallel, do_something("Ten")], do_something("B"))
    _funnel3 = funnel([_funnel, _funnel2])
    # When the outer funnel runs (the same sub-flows appear twice in it)
    result = _funnel3(do_something("Eleven")).get(timeout=RESULT_TIMEOUT_S)
    # Then both runs give what the functions compute along those paths
    s = _sample()
    two = s.do_something("Two", s.do_something("One"))
    piped = s.do_this("Three", [s.do_this("Four", two), s.do_this("Five", two)])
    assert first == piped
    par = [piped, s.do_something("Six"), s.do_something("Seven")]
    a = s.do_something("A", [s.do_something("Eight"), par, s.do_something("Nine")])
    b = s.do_something("B", [par, s.do_something("Ten")])
    assert result == s.do_something("Eleven", [a, b])


def test_hundred_way_funnel_fires_its_callback_exactly_once(mesh: Stack) -> None:
    # Given 100 branches gathered by one callback
    identity, collect = Socket("probe.identity"), Socket("probe.collect")
    flow = funnel([identity.p(i) for i in range(100)], collect.p())
    # When it runs
    result = flow().get(timeout=RESULT_TIMEOUT_S)
    # Then the callback saw every value, and ran once
    assert result == {"count": 100, "sum": sum(range(100))}
    time.sleep(1.0)  # a duplicate firing would have been published by now
    assert len(mesh.traces("collect")) == 1


def test_pipeline_passes_results_in_order_and_parallel_keeps_step_order(mesh: Stack) -> None:
    # Given a pipeline whose steps bind their input in different ways
    times, identity = Socket("probe.times"), Socket("probe.identity")
    slow = Socket("probe.slow_once")
    chain = pipeline([identity.p(3), times.p(2), times.p(10), times.p(value=1).into("factor")])
    # When it runs
    # Then each step got the previous result, appended or by keyword: ((3*2)*10)*1
    assert chain().get(timeout=RESULT_TIMEOUT_S) == 60
    # And an immutable step ignores its input
    assert pipeline([identity.p(3), times.p(7, 1).immutable()])().get(RESULT_TIMEOUT_S) == 7
    # And a parallel answers in the order of its steps, not of completion
    race = parallel([slow.p("slow", 1.5), identity.p("fast")])
    assert race().get(timeout=RESULT_TIMEOUT_S) == ["slow", "fast"]
    # And a composition takes an input for its first steps
    assert pipeline([times.p(5)])(4).get(timeout=RESULT_TIMEOUT_S) == 20


def test_failing_step_surfaces_the_remote_error_and_stops_the_pipeline(mesh: Stack) -> None:
    # Given a pipeline whose middle step raises
    identity, broken = Socket("probe.identity"), Socket("probe.broken")
    flow = pipeline([identity.p("in"), broken.p(), identity.p()])
    # When it runs
    handle = flow()
    with pytest.raises(CallFailed) as failed:
        handle.get(timeout=RESULT_TIMEOUT_S)
    # Then the error is the remote one, naming the failed call
    error = failed.value
    assert error.error_type == "ValueError"
    assert error.remote_message == "broken on 'in'"
    assert error.traceback is not None
    assert "probe.py" in error.traceback
    assert "ValueError: broken on 'in'" in error.traceback
    assert error.call_id == flow_call_id(handle.id, "0.1")
    # And the step after it never ran
    assert not Result(flow_call_id(handle.id, "0.2")).ready()


def test_a_new_client_fetches_the_result_of_a_flow_whose_client_exited(mesh: Stack) -> None:
    # Given a script that starts a slow pipeline and exits at once
    script = (
        "from pyfi.client.api import Socket, pipeline\n"
        "slow, identity = Socket('probe.slow_once'), Socket('probe.identity')\n"
        "print(pipeline([slow.p('late', 2.0), identity.p()])().id)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, **mesh.env},
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    flow_id = done.stdout.strip()
    # When this process asks for that id later
    handle = Result(flow_id)
    assert not handle.ready()  # the first step sleeps 2 s
    with pytest.raises(CallTimeout):
        handle.get(timeout=0.2)
    # Then the workers finished the flow without the client that started it
    assert handle.get(timeout=RESULT_TIMEOUT_S) == "late"
    assert handle.ready()


def test_async_variants(mesh: Stack) -> None:
    # Given a socket function and a pipeline
    identity, times = Socket("probe.identity"), Socket("probe.times")

    async def main() -> tuple[Any, Any, Any]:
        # When they are awaited from asyncio
        sent = await identity.acall("async")
        flow = pipeline([identity.p(2), times.p(21)])()
        return await sent, await flow.aget(timeout=RESULT_TIMEOUT_S), identity("x").id

    value, product, call_id = asyncio.run(main())
    # Then they give the same values as the blocking calls
    assert (value, product) == ("async", 42)
    assert Result(call_id).get(timeout=RESULT_TIMEOUT_S) == "x"


def test_map_and_starmap_send_many_calls_at_once(mesh: Stack) -> None:
    # Given socket functions
    identity, times = Socket("probe.identity"), Socket("probe.times")
    # When many calls are sent in one go
    mapped = identity.map(range(700))
    starred = times.starmap([(n, 2) for n in range(5)])
    # Then each has its own handle and value, in order
    assert len({r.id for r in mapped}) == 700
    assert [r.get(timeout=RESULT_TIMEOUT_S) for r in mapped] == list(range(700))
    assert [r.get(timeout=RESULT_TIMEOUT_S) for r in starred] == [0, 2, 4, 6, 8]


def test_gather_fetches_many_results_in_order_and_raises_the_first_failure(mesh: Stack) -> None:
    # Given many calls sent at once, the later ones still running when gathered
    identity, slow = Socket("probe.identity"), Socket("probe.slow_once")
    mixed = [*identity.map(range(1200)), slow("slow", 0.5), *identity.map(["tail"])]
    # When their results are gathered, then every value comes back, in order
    assert gather(mixed, timeout=RESULT_TIMEOUT_S) == [*range(1200), "slow", "tail"]
    # And with a failing call among them, its failure is raised once all are in
    failing = [*identity.map(range(3)), Socket("probe.broken")("bad"), identity(3)]
    with pytest.raises(CallFailed, match="broken on 'bad'") as raised:
        gather(failing, timeout=RESULT_TIMEOUT_S)
    assert raised.value.call_id == failing[3].id
    # And a call that cannot finish in time ends the wait with a timeout
    with pytest.raises(CallTimeout):
        gather([identity(4), slow("late", 3)], timeout=0.5)
    assert gather([]) == []


def test_pipeline_calls_form_a_chain_in_the_call_records(mesh: Stack) -> None:
    # Given a 3-step pipeline that ran
    identity = Socket("probe.identity")
    handle = pipeline([identity.p("a"), identity.p(), identity.p()])()
    assert handle.get(timeout=RESULT_TIMEOUT_S) == "a"
    ids = [flow_call_id(handle.id, f"0.{i}") for i in range(3)]
    database = Database(mesh.env["PYFI_DB"])

    def recorded() -> dict[str, Any]:
        with database.transaction() as session:
            calls = session.query(models.Call).filter_by(tracking_id=uuid.UUID(handle.id)).all()
            return {str(c.id): (str(c.parent_id) if c.parent_id else None) for c in calls}

    # When the call records are written (batched, in the background)
    wait_for(lambda: len(recorded()) == 3, 20, "three call records")
    # Then each step's parent is the step before it, and all share the flow's id
    assert recorded() == {ids[0]: None, ids[1]: ids[0], ids[2]: ids[1]}
    database.dispose()


def test_reference_example_scripts_print_their_results(mesh: Stack) -> None:
    # Given the reference's examples as shipped in examples/python
    folder = ROOT / "examples" / "python"
    env = {**os.environ, **mesh.env}

    def run(script: str) -> list[str]:
        done = subprocess.run(
            [sys.executable, script],
            capture_output=True,
            text=True,
            env=env,
            cwd=folder,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    # When they run, then they print what the functions compute along the flows
    s = _sample()
    two = s.do_something("Two", s.do_something("One"))
    piped = s.do_something("Three", [s.do_something("Four", two), s.do_something("Five", two)])
    par = [piped, s.do_something("Six"), s.do_something("Seven")]
    nested = s.do_something("Four", [s.do_something("Eight"), par, s.do_something("Nine")])
    assert run("parallel.py") == [f"FUNNEL:  {nested}"]
    lines = run("lambda_flow.py")
    assert len(lines) == 2
    assert lines[0] == str(s.do_this("Three", [s.do_this("Four", two), s.do_this("Five", two)]))
    assert lines[1].startswith("FUNNEL:  {'message': 'Message:Eleven', 'after': [")
