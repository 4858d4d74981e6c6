"""Recorded signatures and network validation, on SQLite and on PostgreSQL.

Networks are built through the object API (so plugs go through
``check_plug``) except where a test needs a network that the API would
refuse: those plugs are inserted as plain rows, as older versions, a direct
SQL edit or a half-applied import could leave them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from pyfi import objects
from pyfi.db import models
from pyfi.db.enums import PlugType
from pyfi.db.session import Database
from pyfi.errors import InvalidNetwork
from pyfi.network.signature import ParameterSpec, parameters_of, record_signature
from pyfi.network.validate import (
    check_network,
    network_problems,
    unchecked_sockets,
    unfed_problems,
)
from tests.conftest import count_rows
from tests.processors import probe


def takes_anything(value: Any, **options: Any) -> Any:
    return value, options


def by_position(left: Any, /, right: Any) -> Any:
    return left, right


def only_args(*values: Any) -> Any:
    return values


def _add(session: Session, kind: str, **values: Any) -> Any:
    return objects.create(session, objects.KINDS[kind], values)


def _sockets(database: Database, *sockets: tuple[str, str], wait: tuple[str, ...] = ()) -> None:
    """A queue, a processor, and a socket per (name, task); ``wait`` names the joins."""
    with database.transaction() as session:
        _add(session, "queue", name="q")
        _add(session, "processor", name="p", module="probe", gitrepo="g")
        for name, task in sockets:
            _add(
                session, "socket", name=name, queue="q", processor="p", task=task, wait=name in wait
            )


def _plug(database: Database, name: str, source: str, target: str, **values: Any) -> None:
    """A plug through the object API, which checks it."""
    with database.transaction() as session:
        _add(session, "plug", name=name, queue="q", source=source, target=target, **values)


def _raw_plug(
    database: Database, name: str, source: str, target: str, *, enabled: bool = True, **kw: Any
) -> None:
    """A plug inserted as a row, bypassing the checks (to build a broken network)."""
    with database.transaction() as session:
        get = objects.get_by_name
        session.add(
            models.Plug(
                name=name,
                source=get(session, models.Socket, source),
                target=get(session, models.Socket, target),
                queue=get(session, models.Queue, "q"),
                enabled=enabled,
                **kw,
            )
        )


def _inspect(database: Database, socket: str, function: Any, source: str | None = None) -> bool:
    """Record ``function``'s signature on the task of ``socket``, as a worker does."""
    parameters = parameters_of(function)
    assert parameters is not None
    with database.transaction() as session:
        task = objects.get_by_name(session, models.Socket, socket).task
        return record_signature(session, task, parameters, source)


def _arguments(database: Database, task: str) -> dict[str, tuple[Any, Any, Any]]:
    with database.transaction() as session:
        rows = session.scalars(
            select(models.Argument).join(models.Task).where(models.Task.name == task)
        )
        return {a.name: (a.position, a.kind, a.required) for a in rows}


def _problems(database: Database) -> list[tuple[str, str]]:
    with database.transaction() as session:
        return [(p.code, p.message) for p in network_problems(session)]


def _stamps(database: Database, task: str) -> list[datetime]:
    """When the task and each of its arguments were last changed."""
    with database.transaction() as session:
        row = session.scalars(select(models.Task).where(models.Task.name == task)).one()
        return [row.updated, *(a.updated for a in row.arguments)]


@contextmanager
def _writes(database: Database) -> Iterator[list[str]]:
    """Every statement that would change the database (or announce a change)."""
    seen: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        head = statement.lstrip().split(None, 1)[0].upper()
        if head in ("INSERT", "UPDATE", "DELETE") or "pg_notify" in statement:
            seen.append(statement)

    event.listen(database.engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(database.engine, "before_cursor_execute", before)


# -- recording signatures -------------------------------------------------


def test_record_signature_stores_parameters_and_source(database: Database) -> None:
    # Given a socket whose function no worker has inspected
    _sockets(database, ("join", "add_two"))
    # When its signature is recorded with its source
    assert _inspect(database, "join", probe.add_two, "def add_two(one, two): ...")
    # Then each parameter has its position, kind and required flag, and the task is stamped
    assert _arguments(database, "add_two") == {
        "one": (0, "positional_or_keyword", True),
        "two": (1, "positional_or_keyword", True),
    }
    with database.transaction() as session:
        task = session.scalars(select(models.Task).where(models.Task.name == "add_two")).one()
        assert task.inspected is not None
        assert task.source == "def add_two(one, two): ..."


def test_record_signature_twice_writes_nothing_the_second_time(database: Database) -> None:
    # Given a signature already recorded
    _sockets(database, ("join", "add_two"))
    assert _inspect(database, "join", probe.add_two, "source")
    before = _stamps(database, "add_two")
    # When the same signature and source are recorded again (every worker start)
    with _writes(database) as writes:
        changed = _inspect(database, "join", probe.add_two, "source")
    # Then it reports no change, issues no write and touches no timestamp
    assert changed is False
    assert writes == []
    assert _stamps(database, "add_two") == before


def test_record_signature_changed_source_is_a_change(database: Database) -> None:
    # Given a recorded signature
    _sockets(database, ("join", "add_two"))
    _inspect(database, "join", probe.add_two, "old source")
    # When only the source differs
    # Then it is recorded
    assert _inspect(database, "join", probe.add_two, "new source") is True


def test_record_signature_keeps_plug_named_argument_with_null_kind(database: Database) -> None:
    # Given a plug bound to an argument 'three' before any worker ran, and an
    # earlier signature that had 'three' as a parameter
    _sockets(database, ("a", "identity"), ("join", "add_two"))
    _plug(database, "p1", "a", "join", argument="three")
    with database.transaction() as session:
        task = objects.get_by_name(session, models.Socket, "join").task
        record_signature(session, task, [ParameterSpec("three", 0, "keyword_only", True)])
    # When the real signature is recorded
    _inspect(database, "join", probe.add_two)
    # Then 'three' stays, with its position, kind and required flag cleared
    assert _arguments(database, "add_two") == {
        "one": (0, "positional_or_keyword", True),
        "two": (1, "positional_or_keyword", True),
        "three": (None, None, None),
    }
    # And the plug is still bound to it
    with database.transaction() as session:
        plug = objects.get_by_name(session, models.Plug, "p1")
        assert plug.argument is not None
        assert plug.argument.name == "three"
    # And recording again still changes nothing
    assert _inspect(database, "join", probe.add_two) is False


# -- cycles ---------------------------------------------------------------


def test_cycle_of_two_plugs_is_reported_once_naming_its_plugs(database: Database) -> None:
    # Given a source feeding a -> b -> a
    _sockets(database, ("entry", "identity"), ("a", "identity"), ("b", "identity"))
    _plug(database, "p0", "entry", "a")
    _plug(database, "p1", "a", "b")
    _raw_plug(database, "p2", "b", "a")
    # Then one cycle is found, starting where the network enters it
    assert _problems(database) == [
        (
            "cycle",
            "plugs p1 (a → b), p2 (b → a) form a cycle; remove one, or mark the one that "
            "closes it as intended with `flow update plug -n p2 --loop`",
        )
    ]


def test_cycle_self_plug_and_error_plugs_count(database: Database) -> None:
    # Given a socket that feeds its own errors back to itself
    _sockets(database, ("a", "identity"))
    _raw_plug(database, "again", "a", "a", type=PlugType.ERROR)
    # Then that is a cycle
    [(code, message)] = _problems(database)
    assert code == "cycle"
    assert message.startswith("plug again (a → a) feeds its own source")
    assert "`flow update plug -n again --loop`" in message


def test_cycles_each_reported_once(database: Database) -> None:
    # Given a triangle a -> b -> c -> a and a second cycle b <-> d sharing b
    _sockets(database, *((name, "identity") for name in "abcd"))
    for name, source, target in [
        ("ab", "a", "b"),
        ("bc", "b", "c"),
        ("ca", "c", "a"),
        ("bd", "b", "d"),
        ("db", "d", "b"),
    ]:
        _raw_plug(database, name, source, target)
    # Then exactly two cycles are reported, each once
    messages = [m for code, m in _problems(database) if code == "cycle"]
    assert len(messages) == 2
    assert any("ab (a → b), bc (b → c), ca (c → a)" in m for m in messages)
    assert any("bd (b → d), db (d → b)" in m for m in messages)


@pytest.mark.parametrize("marked", [{"loop": True}, {"enabled": False}])
def test_cycle_not_counted_when_closing_plug_is_loop_or_disabled(
    database: Database, marked: dict[str, bool]
) -> None:
    # Given a -> b -> a whose closing plug is marked as a loop, or disabled
    _sockets(database, ("a", "identity"), ("b", "identity"))
    _plug(database, "p1", "a", "b")
    _raw_plug(database, "p2", "b", "a", **marked)
    # Then the network is valid
    assert _problems(database) == []
    with database.transaction() as session:
        check_network(session)


def test_check_network_names_first_problem_and_how_many_more(database: Database) -> None:
    # Given two self-plugs
    _sockets(database, ("a", "identity"), ("b", "identity"))
    _raw_plug(database, "pa", "a", "a")
    _raw_plug(database, "pb", "b", "b")
    # Then check_network refuses with the first and a count of the rest
    with database.transaction() as session, pytest.raises(InvalidNetwork) as raised:
        check_network(session)
    assert raised.value.message.startswith("plug pa (a → a) feeds its own source")
    assert raised.value.message.endswith("(and 1 more; run `flow validate`)")


# -- unknown arguments ----------------------------------------------------


def test_unknown_argument_of_inspected_function(database: Database) -> None:
    # Given a plug bound to 'three' before the worker recorded add_two(one, two)
    _sockets(database, ("a", "identity"), ("join", "add_two"))
    _plug(database, "p1", "a", "join", argument="three")
    assert _problems(database) == []
    _inspect(database, "join", probe.add_two)
    # Then the plug's argument is reported with the valid choices
    assert _problems(database) == [
        (
            "unknown-argument",
            "plug p1 binds argument 'three', but add_two(one, two) of socket join has no "
            "such parameter; choose one of: one, two",
        )
    ]


def test_unknown_argument_positional_only_and_args(database: Database) -> None:
    # Given plugs bound to a positional-only parameter and to *values
    _sockets(database, ("a", "identity"), ("pos", "by_position"), ("star", "only_args"))
    _plug(database, "p1", "a", "pos", argument="left")
    _plug(database, "p2", "a", "star", argument="values")
    _inspect(database, "pos", by_position)
    _inspect(database, "star", only_args)
    # Then both are reported, each saying why and what to do
    problems = dict(
        (m.split()[1], m) for code, m in _problems(database) if code == "unknown-argument"
    )
    assert "by_position(left, /, right)" in problems["p1"]
    assert "takes it only by position; choose one of: right" in problems["p1"]
    assert "only_args(*values)" in problems["p2"]
    assert "drop the argument" in problems["p2"]


def test_unknown_argument_accepted_by_kwargs_or_when_disabled(database: Database) -> None:
    # Given a target that takes **options, and a disabled plug with a typo
    _sockets(database, ("a", "identity"), ("any", "takes_anything"), ("join", "add_two"))
    _plug(database, "p1", "a", "any", argument="colour")
    _plug(database, "p2", "a", "join", argument="three", enabled=False)
    _plug(database, "p3", "a", "join", argument="one")
    _plug(database, "p4", "a", "join", argument="two")
    _inspect(database, "any", takes_anything)
    _inspect(database, "join", probe.add_two)
    # Then neither is a problem
    assert _problems(database) == []


# -- unfed arguments ------------------------------------------------------


def test_unfed_argument_of_waiting_socket(database: Database) -> None:
    # Given a join on add_two(one, two) fed only 'one'
    _sockets(database, ("a", "identity"), ("join", "add_two"), wait=("join",))
    _inspect(database, "join", probe.add_two)
    _plug(database, "p1", "a", "join", argument="one")
    # Then 'two' is reported, with the plug to add
    expected = (
        "socket join waits for every argument of add_two(one, two), but no enabled plug "
        "supplies 'two'; add a plug with `--target join --argument two`, or give the "
        "parameter a default"
    )
    assert _problems(database) == [("unfed-argument", expected)]
    with database.transaction() as session:
        socket = objects.get_by_name(session, models.Socket, "join")
        assert [p.message for p in unfed_problems(session, socket)] == [expected]
    # When the second plug is added, the join is complete
    _plug(database, "p2", "a", "join", argument="two")
    assert _problems(database) == []


def test_unfed_argument_not_reported_for_defaults_no_wait_or_no_bound_plug(
    database: Database,
) -> None:
    # Given a join on slow_once(value, seconds=3.0) fed 'value' (its default covers the rest),
    # a non-waiting add_two fed 'one', and a waiting add_two fed the whole result
    _sockets(
        database,
        ("a", "identity"),
        ("slow", "slow_once"),
        ("free", "add_two"),
        ("whole", "add_two"),
        wait=("slow", "whole"),
    )
    for socket, function in [("slow", probe.slow_once), ("free", probe.add_two)]:
        _inspect(database, socket, function)
    _plug(database, "p1", "a", "slow", argument="value")
    _plug(database, "p2", "a", "free", argument="one")
    _plug(database, "p3", "a", "whole")
    # Then nothing is reported
    assert _problems(database) == []


def test_unchecked_sockets_are_those_whose_arguments_matter_but_were_never_inspected(
    database: Database,
) -> None:
    # Given a join and a plug-bound target never inspected, and an inspected one
    _sockets(
        database,
        ("a", "identity"),
        ("bound", "handle_error"),
        ("join", "add_two"),
        ("seen", "slow_once"),
        wait=("join",),
    )
    _plug(database, "p1", "a", "bound", argument="error")
    _plug(database, "p2", "a", "seen", argument="value")
    _plug(database, "p3", "a", "join", argument="whatever")
    _inspect(database, "seen", probe.slow_once)
    # Then the uninspected ones are listed, and none of them is reported as a problem
    with database.transaction() as session:
        assert unchecked_sockets(session) == ["bound", "join"]
    assert _problems(database) == []


# -- check_plug through the object API ------------------------------------


def test_create_plug_closing_a_cycle_is_refused_and_nothing_is_written(
    database: Database,
) -> None:
    # Given a -> b
    _sockets(database, ("a", "identity"), ("b", "identity"))
    _plug(database, "p1", "a", "b")

    # When b -> a is added in the same transaction as another queue
    def queue_then_plug() -> None:
        with database.transaction() as session:
            _add(session, "queue", name="other")
            _add(session, "plug", name="p2", queue="q", source="b", target="a")

    with pytest.raises(InvalidNetwork) as raised:
        queue_then_plug()
    # Then it is refused naming the cycle, and nothing of the transaction remains
    assert raised.value.message == (
        "plug p2 (b → a) closes a cycle: p1 (a → b), p2 (b → a); remove one of them, "
        "or mark p2 as intended with --loop"
    )
    assert count_rows(database, models.Plug) == 1
    assert count_rows(database, models.Queue) == 1


def test_create_plug_with_loop_is_accepted(database: Database) -> None:
    # Given a -> b
    _sockets(database, ("a", "identity"), ("b", "identity"))
    _plug(database, "p1", "a", "b")
    # When b -> a is added as an intended loop
    _plug(database, "p2", "b", "a", loop=True)
    # Then it exists and the network is valid
    assert count_rows(database, models.Plug) == 2
    assert _problems(database) == []


def test_update_plug_into_a_cycle_is_refused_and_rolled_back(database: Database) -> None:
    # Given a -> b and b -> c
    _sockets(database, *((name, "identity") for name in "abc"))
    _plug(database, "p1", "a", "b")
    _plug(database, "p2", "b", "c")
    # When p2 is re-pointed at a
    with pytest.raises(InvalidNetwork, match="closes a cycle"), database.transaction() as s:
        objects.update(s, objects.KINDS["plug"], "p2", {"target": "a"})
    # Then p2 still points at c
    with database.transaction() as session:
        assert objects.get_by_name(session, models.Plug, "p2").target.name == "c"


def test_create_plug_with_unknown_argument_of_inspected_task_is_refused(
    database: Database,
) -> None:
    # Given add_two(one, two), inspected
    _sockets(database, ("a", "identity"), ("join", "add_two"))
    _inspect(database, "join", probe.add_two)
    # When a plug binds 'three'
    with pytest.raises(InvalidNetwork) as raised:
        _plug(database, "p1", "a", "join", argument="three")
    # Then it is refused, and neither the plug nor an argument row 'three' was written
    assert "choose one of: one, two" in raised.value.message
    assert count_rows(database, models.Plug) == 0
    assert set(_arguments(database, "add_two")) == {"one", "two"}
