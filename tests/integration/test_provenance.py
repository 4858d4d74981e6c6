"""Provenance queries against real databases: call trees, call graphs and flow runs.

Calls are inserted by hand, shaped like what workers record: a pipeline
chain, a fan-out, a join (whose call has one parent, the delivery that
completed it), runs with different tracking ids, and bad data (cycles,
parents never recorded). Every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, insert

from pyfi import provenance
from pyfi.client import connection
from pyfi.client import provenance as client_provenance
from pyfi.db import models
from pyfi.db.enums import CallState
from pyfi.db.session import Database
from pyfi.errors import InvalidValue, ObjectNotFound
from pyfi.provenance import CallNode

START = datetime(2026, 1, 1, tzinfo=UTC)

# (name, parent, started): parent is the name of a call of the same run, or an
# id of a call outside it; started is in seconds after START, None if not yet.
CallSpec = tuple[str, str | None, int | None]


def record_run(
    database: Database,
    calls: Sequence[CallSpec],
    *,
    tracking: uuid.UUID | None = None,
    extra: dict[str, dict[str, Any]] | None = None,
) -> dict[str, str]:
    """Insert one flow run's calls; returns each call's id by name (and ``tracking``)."""
    tracking = tracking or uuid.uuid4()
    ids = {name: uuid.uuid4() for name, _parent, _at in calls}
    with database.transaction() as session:
        for index, (name, parent, at) in enumerate(calls):
            began = START + timedelta(seconds=at) if at is not None else None
            values: dict[str, Any] = {
                "id": ids[name],
                "name": name,
                "tracking_id": tracking,
                "parent_id": ids[parent] if parent in ids else _uuid(parent),
                "state": CallState.FINISHED if began else CallState.RECEIVED,
                "created": began or START + timedelta(seconds=index),
                "started": began,
                "finished": began + timedelta(milliseconds=250) if began else None,
                **(extra or {}).get(name, {}),
            }
            session.add(models.Call(**values))
    return {"tracking": str(tracking), **{name: str(call_id) for name, call_id in ids.items()}}


def _uuid(value: str | None) -> uuid.UUID | None:
    return uuid.UUID(value) if value else None


def outline(root: CallNode) -> list[str]:
    """The tree as indented names, one line per call: easy to compare and to read."""
    lines: list[str] = []
    stack = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        lines.append("  " * depth + node.name)
        stack.extend((child, depth + 1) for child in reversed(node.children))
    return lines


PIPELINE: list[CallSpec] = [("a", None, 0), ("b", "a", 1), ("c", "b", 2)]


def test_call_tree_follows_a_pipeline_chain(database: Database) -> None:
    # Given a -> b -> c, recorded children first (as batches may land)
    ids = record_run(database, list(reversed(PIPELINE)))
    with database.transaction() as session:
        # When the tree of each call is asked for
        trees = {name: provenance.call_tree(session, ids[name]) for name in "abc"}
    # Then each holds the calls downstream of it, and nothing upstream
    assert outline(trees["a"]) == ["a", "  b", "    c"]
    assert outline(trees["b"]) == ["b", "  c"]
    assert outline(trees["c"]) == ["c"]


def test_call_tree_fan_out_orders_children_by_start(database: Database) -> None:
    # Given a root whose children started out of insertion order, one not started yet
    ids = record_run(
        database,
        [
            ("root", None, 0),
            ("third", "root", 30),
            ("first", "root", 10),
            ("waiting", "root", None),
            ("second", "root", 20),
            ("second.child", "second", 21),
        ],
        # third was seen first but started last; waiting was seen between first and second
        extra={
            "third": {"created": START},
            "waiting": {"created": START + timedelta(seconds=15)},
        },
    )
    # When the root's tree is built
    with database.transaction() as session:
        tree = provenance.call_tree(session, ids["root"])
    # Then children come in the order they started; the waiting one by when it was seen
    assert outline(tree) == [
        "root",
        "  first",
        "  waiting",
        "  second",
        "    second.child",
        "  third",
    ]


def test_call_tree_ties_on_start_are_broken_by_creation(database: Database) -> None:
    # Given two children that started at the same instant but were seen apart
    ids = record_run(
        database,
        [("root", None, 0), ("late", "root", 5), ("early", "root", 5)],
        extra={
            "late": {"created": START + timedelta(seconds=4)},
            "early": {"created": START + timedelta(seconds=3)},
        },
    )
    with database.transaction() as session:
        tree = provenance.call_tree(session, ids["root"])
    # Then the one created first comes first
    assert outline(tree) == ["root", "  early", "  late"]


# Two sources of one run feed a join; its call's parent is the delivery that
# completed it (src.two here), so src.one's tree does not reach the join.
JOIN: list[CallSpec] = [
    ("src.one", None, 0),
    ("src.two", None, 1),
    ("adder", "src.two", 2),
    ("sink", "adder", 3),
]


def test_call_graph_of_a_join_finds_the_completing_source(database: Database) -> None:
    # Given the join network's run
    ids = record_run(database, JOIN)
    with database.transaction() as session:
        # When the graph of the last call is asked for
        root, focus = provenance.call_graph(session, ids["sink"])
        lonely = provenance.call_tree(session, ids["src.one"])
    # Then it is rooted at the source that completed the join, focused on the sink
    assert outline(root) == ["src.two", "  adder", "    sink"]
    assert focus == ids["sink"]
    assert outline(lonely) == ["src.one"]


def test_call_graph_from_a_middle_call_finds_root_and_focus(database: Database) -> None:
    # Given a -> b -> c with a fan-out b -> d, and a second run of the same sockets
    ids = record_run(database, [*PIPELINE, ("d", "b", 3)])
    record_run(database, PIPELINE)
    with database.transaction() as session:
        # When the graph of b is asked for
        root, focus = provenance.call_graph(session, ids["b"])
    # Then it is the whole tree from a, of this run only, focused on b
    assert outline(root) == ["a", "  b", "    c", "    d"]
    assert focus == ids["b"]
    assert {node.tracking_id for node in root.walk()} == {ids["tracking"]}
    focused = root.find(ids["b"])
    assert focused is not None
    assert focused.parent_id == ids["a"]


def test_call_node_carries_plain_values(database: Database) -> None:
    # Given a failed call with a multi-line error, under a socket that still exists
    socket_id = _add_socket(database, "renamed.socket")
    ids = record_run(
        database,
        [("a", None, 0), ("b", "a", 1)],
        extra={
            "b": {
                "state": CallState.FAILED,
                "error": "\n  ValueError: broken on 'x'\nTraceback (most recent call last):\n",
                "socket_id": socket_id,
            }
        },
    )
    with database.transaction() as session:
        root = provenance.call_tree(session, ids["a"])
    # Then the node holds detached values: string ids, the first error line, the socket's name
    (child,) = root.children
    assert (child.id, child.parent_id, child.tracking_id) == (ids["b"], ids["a"], ids["tracking"])
    assert child.state is CallState.FAILED
    assert child.error == "ValueError: broken on 'x'"
    assert child.socket == "renamed.socket"
    assert root.socket is None
    assert root.error is None
    assert child.started == START + timedelta(seconds=1)
    assert child.duration == timedelta(milliseconds=250)
    # And to_dict is JSON-ready, nested
    data = json.loads(json.dumps(root.to_dict()))
    assert data["children"][0]["started"] == "2026-01-01T00:00:01+00:00"
    assert data["children"][0]["duration_s"] == 0.25
    assert data["children"][0]["state"] == "failed"
    assert data["children"][0]["children"] == []
    assert provenance.tree_json(root) == json.dumps(root.to_dict(), indent=2)


def _add_socket(database: Database, name: str) -> uuid.UUID:
    with database.transaction() as session:
        queue = models.Queue(name="q")
        processor = models.Processor(name="p", module="m", gitrepo="https://x/y")
        task = models.Task(name="t", processor=processor)
        socket = models.Socket(name=name, processor=processor, task=task, queue=queue)
        session.add_all([queue, processor, task, socket])
        session.flush()
        return socket.id


def test_call_graph_stops_at_a_parent_never_recorded(database: Database) -> None:
    # Given b whose parent was never recorded, and x whose parent is in another run
    ids = record_run(database, [("b", str(uuid.uuid4()), 1), ("c", "b", 2)])
    other = record_run(database, [("x", ids["b"], 3), ("y", "x", 4)])
    with database.transaction() as session:
        graph, _focus = provenance.call_graph(session, ids["c"])
        tree = provenance.call_tree(session, ids["b"])
        other_graph, _ = provenance.call_graph(session, other["y"])
    # Then each walk up ends inside its own run
    assert outline(graph) == ["b", "  c"]
    assert outline(tree) == ["b", "  c"]
    assert outline(other_graph) == ["x", "  y"]


@pytest.mark.timeout(20, func_only=True)  # the test, not the migrations before it
def test_cycles_in_bad_data_do_not_hang(database: Database) -> None:
    # Given a <-> b parenting each other, a child c of b, and d its own parent
    ids = record_run(database, [("a", None, 0), ("b", "a", 1), ("c", "b", 2), ("d", None, 3)])
    with database.transaction() as session:
        session.get_one(models.Call, uuid.UUID(ids["a"])).parent_id = uuid.UUID(ids["b"])
        session.get_one(models.Call, uuid.UUID(ids["d"])).parent_id = uuid.UUID(ids["d"])
    with database.transaction() as session:
        # When trees and graphs are asked for
        tree = provenance.call_tree(session, ids["a"])
        graph, focus = provenance.call_graph(session, ids["c"])
        alone = provenance.call_tree(session, ids["d"])
        alone_graph, _ = provenance.call_graph(session, ids["d"])
    # Then they end, and no call appears twice
    assert outline(tree) == ["a", "  b", "    c"]
    # (the walk up from c goes c, b, a and stops where b would come again)
    assert outline(graph) == ["a", "  b", "    c"]
    assert focus == ids["c"]
    assert [node.name for node in graph.walk()].count("b") == 1
    assert outline(alone) == ["d"]
    assert outline(alone_graph) == ["d"]


def test_flow_calls_lists_one_run_in_start_order(database: Database) -> None:
    # Given two runs of the same sockets, started interleaved
    first = record_run(database, [("a", None, 0), ("c", "b", 4), ("b", "a", 2)])
    second = record_run(database, [("a", None, 1), ("b", "a", 3), ("c", "b", 5)])
    with database.transaction() as session:
        # When the calls of each run are listed
        by_call = [c.name for c in provenance.flow_calls(session, first["c"])]
        by_call_ids = [str(c.id) for c in provenance.flow_calls(session, first["c"])]
        by_tracking = [str(c.id) for c in provenance.tracking_calls(session, second["tracking"])]
        unknown = provenance.tracking_calls(session, uuid.uuid4())
    # Then each holds its own run only, oldest start first
    assert by_call == ["a", "b", "c"]
    assert by_call_ids == [first["a"], first["b"], first["c"]]
    assert by_tracking == [second["a"], second["b"], second["c"]]
    assert unknown == []


@pytest.mark.parametrize(
    "query", [provenance.call_tree, provenance.call_graph, provenance.flow_calls]
)
def test_unknown_or_malformed_call_id_is_user_error(database: Database, query: Any) -> None:
    # Given a recorded run, so that "unknown" is not the same as "empty table"
    record_run(database, PIPELINE)
    missing = str(uuid.uuid4())
    with database.transaction() as session:
        # Then an unknown id is ObjectNotFound and a malformed one InvalidValue
        with pytest.raises(ObjectNotFound) as unknown:
            query(session, missing)
        with pytest.raises(InvalidValue) as malformed:
            query(session, "xyz")
        with pytest.raises(InvalidValue):
            provenance.tracking_calls(session, "xyz")
    assert (
        unknown.value.message == f"no call with id '{missing}'; see `flow ls calls` for recent ones"
    )
    assert malformed.value.message == "'xyz' is not a valid call id; expected a UUID"


@contextmanager
def counting_statements(database: Database) -> Iterator[list[str]]:
    """Every SQL statement sent to the database while the block runs."""
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(database.engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(database.engine, "before_cursor_execute", count)


def _large_run(database: Database) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """2,000 calls: a root, a 1,200-call chain under it and 799 leaves beside it."""
    tracking = uuid.uuid4()
    chain = [uuid.uuid4() for _ in range(1201)]  # chain[0] is the root
    leaves = [uuid.uuid4() for _ in range(799)]
    rows = []
    for depth, call_id in enumerate(chain):
        rows.append((call_id, chain[depth - 1] if depth else None, depth))
    rows += [(leaf, chain[0], 2000 + index) for index, leaf in enumerate(leaves)]
    with database.transaction() as session:
        session.execute(
            insert(models.Call),
            [
                {
                    "id": call_id,
                    "name": f"s{at}",
                    "tracking_id": tracking,
                    "parent_id": parent,
                    "state": CallState.FINISHED,
                    "created": START + timedelta(seconds=at),
                    "updated": START + timedelta(seconds=at),
                    "started": START + timedelta(seconds=at),
                }
                for call_id, parent, at in rows
            ],
        )
    return tracking, chain


@pytest.mark.timeout(60, func_only=True)  # the test, not the migrations before it
def test_large_flow_is_built_with_a_bounded_number_of_queries(database: Database) -> None:
    # Given a run of 2,000 calls, 1,201 deep (past Python's recursion limit)
    _tracking, chain = _large_run(database)
    with database.transaction() as session, counting_statements(database) as statements:
        # When its tree, the graph of its deepest call and its listing are built
        tree = provenance.call_tree(session, chain[0])
        after_tree = len(statements)
        graph, focus = provenance.call_graph(session, chain[-1])
        after_graph = len(statements)
        listed = provenance.flow_calls(session, chain[600])
    # Then each took one statement, not one per call or per level
    assert (after_tree, after_graph - after_tree, len(statements) - after_graph) == (1, 1, 1)
    # And the tree is whole: 2,000 calls, the chain first (it started first), 1,201 deep
    assert sum(1 for _ in tree.walk()) == 2000
    assert len(listed) == 2000
    assert len(tree.children) == 800
    deepest = tree
    while deepest.children:
        deepest = deepest.children[0]
    assert deepest.id == str(chain[-1]) == focus
    assert sum(1 for _ in graph.walk()) == 2000
    # And a tree that deep still converts to JSON (too deep for json.loads to read back:
    # the deepest call's fields sit 4 spaces further in per level, 2 more for the root)
    text = provenance.tree_json(tree)
    assert text.count('"id": ') == 2000
    assert f'\n{" " * (4 * 1200 + 2)}"id": "{chain[-1]}",\n' in text
    assert text.endswith("\n}")


@pytest.mark.parametrize(
    "data",
    [
        {"a": [1, 2.5, None, True], "b": {}, "c": [], "d": {"e": 'é\n"x"'}},
        [],
        {},
        "plain",
        [[[]], [{}], {"k": [{"z": 0}]}],
    ],
)
def test_dumps_deep_matches_json_dumps(data: Any) -> None:
    # The CLI's writer for deep trees prints exactly what json.dumps would
    assert provenance.dumps_deep(data) == json.dumps(data, indent=2)


def test_client_provenance_returns_detached_values(database: Database) -> None:
    # Given a recorded run and the default connection pointed at its database
    ids = record_run(database, [*PIPELINE, ("d", "b", 3)])
    connection.connect(database_url=database.url)
    try:
        # When the Python API is used
        tree = client_provenance.call_tree(ids["a"])
        root, focus = client_provenance.call_graph(ids["c"])
        calls = client_provenance.flow_calls(ids["d"])
        tracked = client_provenance.tracking_calls(ids["tracking"])
        with pytest.raises(ObjectNotFound):
            client_provenance.call_tree(uuid.uuid4())
    finally:
        connection.disconnect()
    # Then plain values come back, usable after the transaction and the connection closed
    assert outline(tree) == ["a", "  b", "    c", "    d"]
    assert outline(root) == outline(tree)
    assert focus == ids["c"]
    assert [c["name"] for c in calls] == ["a", "b", "c", "d"]
    assert calls == tracked
    assert calls[1]["parent_id"] == ids["a"]
    assert calls[1]["started"] == "2026-01-01T00:00:01+00:00"
    json.dumps(calls)
