"""`flow validate`, and the checks `flow add | update plug` run on each plug."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import update

from pyfi import objects
from pyfi.db import models
from pyfi.db.session import Database
from pyfi.network.signature import parameters_of, record_signature
from tests.conftest import Flow, count_rows
from tests.processors import probe


def _network(flow: Flow, *sockets: tuple[str, str], wait: tuple[str, ...] = ()) -> None:
    """A queue q, a processor p, and a socket per (name, task)."""
    flow("add", "queue", "-n", "q")
    flow("add", "processor", "-n", "p", "-g", "g", "-m", "probe")
    for name, task in sockets:
        flow("add", "socket", "-n", name, "-q", "q", "-pn", "p", "-t", task)
        if name in wait:
            flow("update", "socket", "-n", name, "--wait")


def _plug(flow: Flow, name: str, source: str, target: str, *extra: str) -> Any:
    return flow("add", "plug", "-n", name, "-q", "q", "-s", source, "-t", target, *extra)


def _inspect(database: Database, socket: str, function: Any) -> None:
    """What a worker does when it starts: record the function's signature."""
    parameters = parameters_of(function)
    assert parameters is not None
    with database.transaction() as session:
        task = objects.get_by_name(session, models.Socket, socket).task
        record_signature(session, task, parameters)


def _errors(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error: ")]


def test_validate_valid_network_exits_0(flow: Flow, database: Database) -> None:
    # Given a -> join on add_two(one, two) fed both arguments, and an intended loop
    _network(flow, ("a", "identity"), ("join", "add_two"), wait=("join",))
    _inspect(database, "join", probe.add_two)
    _plug(flow, "p1", "a", "join", "-a", "one")
    _plug(flow, "p2", "a", "join", "-a", "two")
    _plug(flow, "again", "join", "a", "--loop")
    # When the network is validated
    result = flow("validate")
    # Then it is valid, with the counts, and every socket was checked
    assert result.stdout.splitlines() == ["network is valid (2 sockets, 3 plugs)"]
    assert result.stderr == ""


def test_validate_notes_unchecked_sockets_on_stderr(flow: Flow) -> None:
    # Given a plug bound to an argument of a function no worker has run yet
    _network(flow, ("a", "identity"), ("join", "add_two"))
    _plug(flow, "p1", "a", "join", "-a", "one")
    # When the network is validated
    result = flow("validate")
    # Then it is valid, and stderr says which sockets could not be checked
    assert result.stdout.splitlines() == ["network is valid (2 sockets, 1 plugs)"]
    assert result.stderr.splitlines() == [
        "note: 1 socket(s) not checked yet: a worker records a function's signature when "
        "it starts: join"
    ]


def test_validate_reports_each_problem_kind_one_line_each(flow: Flow, database: Database) -> None:
    # Given a cycle a <-> b (its closing plug's loop mark later removed in the
    # database), a plug bound to an argument the function lacks, and a join
    # missing one of its arguments
    _network(
        flow,
        ("a", "identity"),
        ("b", "identity"),
        ("typo", "add_two"),
        ("join", "add_two"),
        wait=("join",),
    )
    _plug(flow, "p1", "a", "b")
    _plug(flow, "p2", "b", "a", "--loop")
    _plug(flow, "p3", "a", "typo", "-a", "three")
    _plug(flow, "p4", "a", "join", "-a", "one")
    _inspect(database, "typo", probe.add_two)
    with database.transaction() as session:
        session.execute(update(models.Plug).where(models.Plug.name == "p2").values(loop=False))
    # When the network is validated
    error = flow.fails("validate")
    result = flow("validate", ok=False)
    # Then each problem is one line, and the command exits 2 counting them
    assert error == "Error: 3 problem(s) found"
    errors = _errors(result.stdout)
    assert len(errors) == 3
    assert errors[0].startswith("error: plugs p1 (a → b), p2 (b → a) form a cycle")
    assert errors[1].startswith("error: plug p3 binds argument 'three'")
    assert errors[2].startswith("error: socket join waits for every argument of add_two")
    assert "network is valid" not in result.stdout


def test_validate_json(flow: Flow, database: Database) -> None:
    # Given a self-plug whose loop mark was dropped in the database behind the CLI's back
    _network(flow, ("a", "identity"))
    _plug(flow, "self", "a", "a", "--loop")
    with database.transaction() as session:
        session.execute(update(models.Plug).values(loop=False))
    # When the network is validated as JSON
    result = flow("validate", "--json", ok=False)
    # Then stdout is only the JSON report and the exit code is 2
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert report["valid"] is False
    assert (report["sockets"], report["plugs"]) == (1, 1)
    assert [p["code"] for p in report["problems"]] == ["cycle"]
    assert report["unchecked"] == []


def test_add_plug_closing_a_cycle_is_refused(flow: Flow, database: Database) -> None:
    # Given a -> b
    _network(flow, ("a", "identity"), ("b", "identity"))
    _plug(flow, "p1", "a", "b")
    # When b -> a is added
    error = flow.fails("add", "plug", "-n", "p2", "-q", "q", "-s", "b", "-t", "a")
    # Then it is refused in one line naming the cycle and the way out, and not written
    assert error == (
        "Error: plug p2 (b → a) closes a cycle: p1 (a → b), p2 (b → a); remove one of them, "
        "or mark p2 as intended with --loop"
    )
    assert count_rows(database, models.Plug) == 1


def test_add_plug_with_loop_is_accepted(flow: Flow, database: Database) -> None:
    # Given a -> b
    _network(flow, ("a", "identity"), ("b", "identity"))
    _plug(flow, "p1", "a", "b")
    # When b -> a is added as an intended loop
    result = _plug(flow, "p2", "b", "a", "--loop")
    # Then it is added, and `--no-loop` on it is refused
    assert result.stdout.startswith("Added plug p2")
    assert count_rows(database, models.Plug) == 2
    error = flow.fails("update", "plug", "-n", "p2", "--no-loop")
    assert "closes a cycle" in error
    flow("validate")


def test_add_plug_with_unknown_argument_of_inspected_task_is_refused(
    flow: Flow, database: Database
) -> None:
    # Given add_two(one, two), recorded by a worker
    _network(flow, ("a", "identity"), ("join", "add_two"))
    _inspect(database, "join", probe.add_two)
    # When a plug binds 'three'
    error = flow.fails("add", "plug", "-n", "p1", "-q", "q", "-s", "a", "-t", "join", "-a", "three")
    # Then it is refused naming the function and the choices
    assert error == (
        "Error: plug p1 binds argument 'three', but add_two(one, two) of socket join has no "
        "such parameter; choose one of: one, two"
    )
    assert count_rows(database, models.Plug) == 0


def test_add_plug_warns_about_an_incomplete_join(flow: Flow, database: Database) -> None:
    # Given a join on add_two(one, two), recorded by a worker
    _network(flow, ("a", "identity"), ("join", "add_two"), wait=("join",))
    _inspect(database, "join", probe.add_two)
    # When the first of its two plugs is added
    first = _plug(flow, "p1", "a", "join", "-a", "one")
    # Then it is added, with a one-line warning on stderr naming the missing argument
    assert first.stdout.startswith("Added plug p1")
    assert first.stderr.splitlines() == [
        "warning: socket join waits for every argument of add_two(one, two), but no enabled "
        "plug supplies 'two'; add a plug with `--target join --argument two`, or give the "
        "parameter a default"
    ]
    # When the second is added, there is nothing to warn about
    second = _plug(flow, "p2", "a", "join", "-a", "two")
    assert second.stderr == ""
    # And disabling it brings the warning back
    disabled = flow("update", "plug", "-n", "p2", "--disabled")
    assert disabled.stdout == "Updated plug p2\n"
    assert "no enabled plug supplies 'two'" in disabled.stderr
