"""`flow ls call --id X` with --tree, --graph and --flow: provenance from the shell."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from pyfi.backend import open_backend
from pyfi.cli.render import CONTINUED
from pyfi.db.enums import CallState
from pyfi.db.session import Database
from tests.conftest import Flow
from tests.integration.test_provenance import START, record_run

# a -> b -> c, with b fanning out to d (which failed) as well; and a second run.
RUN = [("a", None, 0), ("b", "a", 1), ("c", "b", 2), ("d", "b", 3)]
FAILED_D = {
    "d": {
        "state": CallState.FAILED,
        "error": "ValueError: broken on 'x'\nTraceback (most recent call last):",
    }
}


@pytest.fixture
def run(flow: Flow, database: Database) -> dict[str, str]:
    ids = record_run(database, RUN, extra=FAILED_D)
    record_run(database, RUN)  # another run of the same sockets, never shown with the first
    return ids


def _short(ids: dict[str, str], name: str) -> str:
    return ids[name][:8]


def test_ls_call_tree_draws_the_calls_a_call_caused(flow: Flow, run: dict[str, str]) -> None:
    # When the tree of b is drawn
    output = flow("ls", "call", "--id", run["b"], "--tree").output
    # Then b is the root, its two children under it, each with short id, state and duration
    assert output.splitlines() == [
        f"b  {_short(run, 'b')}  finished  0.250s",
        f"├── c  {_short(run, 'c')}  finished  0.250s",
        f"└── d  {_short(run, 'd')}  failed  0.250s  ValueError: broken on 'x'",
    ]


def test_ls_call_graph_draws_the_whole_graph_and_marks_the_call(
    flow: Flow, run: dict[str, str]
) -> None:
    # When the graph of c is drawn
    output = flow("ls", "call", "--id", run["c"], "-g").output
    # Then it starts at the root a, and c (only c) is marked
    assert output.splitlines() == [
        f"a  {_short(run, 'a')}  finished  0.250s",
        f"└── b  {_short(run, 'b')}  finished  0.250s",
        f"    ├── c  {_short(run, 'c')}  finished  0.250s  ◀ this call",
        f"    └── d  {_short(run, 'd')}  failed  0.250s  ValueError: broken on 'x'",
    ]


def test_ls_call_flow_lists_every_call_of_the_run(flow: Flow, run: dict[str, str]) -> None:
    # When the run of d is listed
    output = flow("ls", "call", "--id", run["d"], "--flow").output
    rows = [line for line in output.splitlines() if line.startswith("│ ")]
    # Then a table holds the run's four calls in start order, d's row marked
    assert [row.split("│")[2].strip() for row in rows[1:]] == ["a", "b", "c", "d"]
    assert [row.split("│")[1].strip() for row in rows[1:]] == ["1", "2", "3", "4 ◀"]
    assert "Parent" in rows[0]
    assert output.splitlines()[-1] == f"4 calls in flow run {run['tracking']}"


def test_ls_call_tree_json_is_a_nested_dict(flow: Flow, run: dict[str, str]) -> None:
    # When the tree of b is asked for as JSON
    tree = json.loads(flow("ls", "call", "--id", run["b"], "--tree", "--json").output)
    # Then it nests children under their parent, with plain values
    assert tree["id"] == run["b"]
    assert tree["parent_id"] == run["a"]
    assert [child["name"] for child in tree["children"]] == ["c", "d"]
    assert tree["children"][1]["error"] == "ValueError: broken on 'x'"
    assert tree["children"][1]["state"] == "failed"
    assert tree["children"][0]["children"] == []
    assert tree["started"] == (START + timedelta(seconds=1)).isoformat()


def test_ls_call_graph_json_names_root_and_focus(flow: Flow, run: dict[str, str]) -> None:
    graph = json.loads(flow("ls", "call", "--id", run["d"], "--graph", "--json").output)
    assert graph["focus"] == run["d"]
    assert graph["root"]["id"] == run["a"]
    (b,) = graph["root"]["children"]
    assert [child["id"] for child in b["children"]] == [run["c"], run["d"]]


def test_ls_call_flow_json_lists_the_run(flow: Flow, run: dict[str, str]) -> None:
    listed = json.loads(flow("ls", "call", "--id", run["c"], "-f", "--json").output)
    assert listed["tracking_id"] == run["tracking"]
    assert listed["total"] == 4
    assert [c["id"] for c in listed["calls"]] == [run[name] for name in "abcd"]


def test_ls_call_default_view_counts_child_calls(
    flow: Flow, database: Database, run: dict[str, str]
) -> None:
    # Given a call of another run that names b as its parent (not part of b's provenance)
    record_run(database, [("stray", run["b"], 9)])
    # When b is shown the usual way
    table = flow("ls", "call", "--id", run["b"]).output
    shown = json.loads(flow("ls", "call", "--id", run["b"], "--json").output)
    # Then its provenance names its parent and run and counts its two children
    provenance_rows = table.split("Provenance")[1].split("Events")[0]
    assert "Child calls" in provenance_rows
    assert f"│ {run['b']} │ {run['a']} │ {run['tracking']} │ 2 " in provenance_rows
    assert shown["provenance"] == {
        "parent_id": run["a"],
        "tracking_id": run["tracking"],
        "children": 2,
    }
    assert shown["call"]["id"] == run["b"]


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--tree", "--graph"], "--tree and --graph"),
        (["-t", "-f"], "--tree and --flow"),
        (["-g", "-f", "-t"], "--tree and --graph and --flow"),
        (["--flow", "--result"], "--flow and --result"),
    ],
)
def test_ls_call_views_cannot_be_combined(
    flow: Flow, run: dict[str, str], flags: list[str], named: str
) -> None:
    error = flow.fails("ls", "call", "--id", run["a"], *flags)
    assert error == f"Error: {named} cannot be combined; choose one view of the call"


@pytest.mark.parametrize("view", ["--tree", "--graph", "--flow"])
def test_ls_call_views_unknown_id_is_one_line_user_error(
    flow: Flow, run: dict[str, str], view: str
) -> None:
    missing = uuid.uuid4()
    assert flow.fails("ls", "call", "--id", str(missing), view) == (
        f"Error: no call with id '{missing}'; see `flow ls calls` for recent ones"
    )
    assert flow.fails("ls", "call", "--id", "xyz", view, "--json") == (
        "Error: 'xyz' is not a valid call id; expected a UUID"
    )


def test_ls_call_tree_of_a_very_deep_chain(flow: Flow, database: Database) -> None:
    # Given a chain 700 calls deep: too deep for one drawing, json.dumps or recursion
    chain = [(f"s{i}", f"s{i - 1}" if i else None, i) for i in range(700)]
    ids = record_run(database, chain)
    # When it is drawn and printed as JSON
    drawn = flow("ls", "call", "--id", ids["s0"], "--tree").output.splitlines()
    text = flow("ls", "call", "--id", ids["s0"], "--tree", "--json").output
    # Then no call is lost: cut branches say so and go on below, from the node they were cut at
    labels = [line.lstrip(" │├└─") for line in drawn]
    assert {f"s{i}  {ids[f's{i}'][:8]}  finished  0.250s" for i in range(700)} <= set(labels)
    cuts = [index for index, line in enumerate(labels) if line == CONTINUED]
    assert len(cuts) >= 2
    for cut in cuts:
        assert drawn[cut + 1] == ""
        assert labels[cut + 2] == labels[cut - 1]
    assert labels[-1].startswith("s699  ")
    assert max(len(line) for line in drawn) <= 1000
    # And the JSON holds every call, nested 700 deep
    assert text.count('"id": ') == 700
    assert f'\n{" " * (4 * 699 + 2)}"id": "{ids["s699"]}",\n' in text


def test_ls_call_result_is_found_whatever_the_id_spelling(
    flow: Flow, run: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given b's outcome in the result backend, kept under its canonical (lower-case) id
    backend_url = f"sqlite:///{tmp_path / 'results.sqlite'}"
    monkeypatch.setenv("PYFI_BACKEND", backend_url)
    with open_backend(backend_url) as backend:
        backend.store(run["b"], json.dumps({"status": "ok", "value": 42}), 60)
    # When b is shown with its result, its id typed in upper case
    shown = json.loads(flow("ls", "call", "--id", run["b"].upper(), "--result", "--json").output)
    # Then the call and its result are both found
    assert shown["call"]["id"] == run["b"]
    assert shown["result"] == {"status": "ok", "value": 42}
