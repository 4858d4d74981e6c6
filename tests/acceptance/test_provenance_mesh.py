"""Provenance end to end: a plug chain run by a real worker, read back as a call tree."""

from __future__ import annotations

import json

import pytest

from pyfi.client import connection, provenance
from pyfi.db.enums import CallState
from pyfi.errors import ObjectNotFound
from pyfi.message import derived_id
from pyfi.provenance import CallNode
from tests.acceptance.mesh import Stack, wait_for

pytestmark = pytest.mark.slow

FIRST = "pyfi.processors.sample.do_something"
SECOND = "pyfi.processors.sample.do_this"
THIRD = "hop3"


def _chain(stack: Stack) -> None:
    stack.cli("add queue -n pyfi.queue1 -t direct")
    stack.cli("add processor -n proc1 -g file:///examples -m pyfi_examples.sample -c 2")
    stack.cli(f"add socket -n {FIRST} -q pyfi.queue1 -pn proc1 -t do_something")
    stack.cli(f"add socket -n {SECOND} -q pyfi.queue1 -pn proc1 -t do_this")
    stack.cli(f"add socket -n {THIRD} -q pyfi.queue1 -pn proc1 -t do_something")
    stack.cli(f"add plug -n p12 -q pyfi.queue1 -s {FIRST} -t {SECOND}")
    stack.cli(f"add plug -n p23 -q pyfi.queue1 -s {SECOND} -t {THIRD}")


def test_provenance_of_a_three_socket_plug_chain(stack: Stack) -> None:
    # Given a -> b -> c wired by plugs, and a worker
    _chain(stack)
    stack.start_worker("proc1")
    # When a is called and the result reaches the end of the chain
    with stack.client() as client:
        first = client.send(FIRST, ["x"])
        second = derived_id(first.call_id, "p12")
        third = derived_id(second, "p23")
        assert client.result(third, 30) == "Message:Do this: Message:x"
    # Then, once the batched records land, the tree of a's call is the chain a -> b -> c
    trees: list[CallNode] = []

    def recorded() -> bool:
        try:
            trees.append(provenance.call_tree(first.call_id))
        except ObjectNotFound:
            return False
        return [node.state for node in trees[-1].walk()] == [CallState.FINISHED] * 3

    connection.connect(stack.settings)
    try:
        wait_for(recorded, 20, "three finished call records")
        root, focus = provenance.call_graph(third)
    finally:
        connection.disconnect()
    chain = list(trees[-1].walk())
    assert [node.id for node in chain] == [first.call_id, second, third]
    assert [node.name for node in chain] == [FIRST, SECOND, THIRD]
    assert [len(node.children) for node in chain] == [1, 1, 0]
    assert [node.parent_id for node in chain] == [None, first.call_id, second]
    assert {node.tracking_id for node in chain} == {first.tracking_id}
    assert [node.socket for node in chain] == [FIRST, SECOND, THIRD]
    assert all(node.duration is not None for node in chain)
    assert root.id == first.call_id
    assert focus == third
    # And `flow ls calls --tracking` shows all three
    listed = json.loads(stack.cli(f"ls calls --tracking {first.tracking_id} --json"))
    assert {c["id"] for c in listed["calls"]} == {first.call_id, second, third}
    table = stack.cli(f"ls calls --tracking {first.tracking_id}")
    assert all(call_id in table for call_id in (first.call_id, second, third))
    # And a real `flow` process draws the graph from the last call, marked
    drawn = stack.run_flow("ls", "call", "--id", third, "--graph")
    assert drawn.returncode == 0, drawn.stderr
    lines = drawn.stdout.splitlines()
    assert lines[0].startswith(f"{FIRST}  {first.call_id[:8]}  finished  ")
    assert lines[1].startswith(f"└── {SECOND}  {second[:8]}  finished  ")
    assert lines[2].startswith(f"    └── {THIRD}  {third[:8]}  finished  ")
    assert lines[2].endswith("◀ this call")
    assert len(lines) == 3
