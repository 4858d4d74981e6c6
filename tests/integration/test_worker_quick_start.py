"""A starting worker reads its spec with plain selects and records signatures once consuming."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session, selectinload

from pyfi.config import load_settings
from pyfi.db import models
from pyfi.db.enums import QueueType
from pyfi.db.session import Database
from pyfi.errors import InvalidValue, ProcessorNotFound
from pyfi.wiring import (
    PlugSpec,
    ProcessorSpec,
    SocketSpec,
    load_processor,
    route_of,
    spec_from_json,
    spec_to_json,
)
from pyfi.worker.factory import build_worker, record_signatures_once_consuming
from pyfi.worker.worker import Worker, WorkerOptions
from tests.acceptance.mesh import PROBES
from tests.conftest import Flow


def _network(database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """Processor `probe` with every kind of edge the spec carries, and some it must leave out."""
    flow = Flow(database.url, monkeypatch)
    flow("add", "queue", "-n", "q")
    flow("add", "queue", "-n", "limited", "-t", "fanout", "--transient", "--max-length", "5",
         "--message-ttl", "1000")  # fmt: skip
    flow("add", "processor", "-n", "probe", "-g", "file:///probes", "-m", "probe", "-c", "3",
         "-r", "2")  # fmt: skip
    flow("add", "processor", "-n", "other", "-g", "file:///probes", "-m", "probe")
    for name, queue, task in [
        ("src", "q", "identity"),
        ("join", "limited", "add_two"),
        ("errors", "q", "handle_error"),
        ("slow", "q", "slow_once"),
    ]:
        flow("add", "socket", "-n", name, "-q", queue, "-pn", "probe", "-t", task)
    flow("update", "socket", "-n", "join", "--wait")
    flow("add", "socket", "-n", "off", "-q", "q", "-pn", "probe", "-t", "identity", "--disabled")
    flow("add", "socket", "-n", "elsewhere", "-q", "limited", "-pn", "other", "-t", "identity")
    flow("add", "plug", "-n", "p-one", "-q", "q", "-s", "src", "-t", "join", "-a", "one")
    flow("add", "plug", "-n", "p-two", "-q", "q", "-s", "elsewhere", "-t", "join", "-a", "two")
    flow("add", "plug", "-n", "p-err", "-q", "q", "-s", "join", "-t", "errors", "--type", "error")
    flow("add", "plug", "-n", "p-out", "-q", "q", "-s", "src", "-t", "elsewhere")
    flow("add", "plug", "-n", "p-off", "-q", "q", "-s", "src", "-t", "slow", "--disabled")
    flow("add", "plug", "-n", "p-dead", "-q", "q", "-s", "src", "-t", "slow", "-a", "seconds",
         "--disabled")  # fmt: skip
    flow("add", "plug", "-n", "p-from-off", "-q", "q", "-s", "off", "-t", "slow")


def _from_objects(session: Session, name: str) -> ProcessorSpec:
    """The spec as the ORM objects say it (how workers read it before): the oracle."""
    processor = session.scalars(select(models.Processor).where(models.Processor.name == name)).one()
    sockets = session.scalars(
        select(models.Socket)
        .where(models.Socket.processor_id == processor.id, models.Socket.enabled.is_(True))
        .options(
            selectinload(models.Socket.queue),
            selectinload(models.Socket.task),
            selectinload(models.Socket.incoming).selectinload(models.Plug.argument),
            selectinload(models.Socket.outgoing).selectinload(models.Plug.argument),
            selectinload(models.Socket.outgoing)
            .selectinload(models.Plug.target)
            .selectinload(models.Socket.queue),
        )
        .order_by(models.Socket.name)
    )
    return ProcessorSpec(
        name=processor.name,
        module=processor.module,
        retries=processor.retries,
        retry_delay_s=processor.retry_delay,
        concurrency=processor.concurrency,
        sockets=tuple(
            SocketSpec(
                name=socket.name,
                id=str(socket.id),
                task=socket.task.name,
                queue=socket.queue.name,
                route=route_of(socket),
                wait=socket.wait,
                join_arguments=tuple(
                    sorted({p.argument.name for p in socket.incoming if p.argument and p.enabled})
                ),
                outgoing=tuple(
                    PlugSpec(
                        name=plug.name,
                        type=plug.type,
                        target=plug.target.name,
                        target_route=route_of(plug.target),
                        argument=plug.argument.name if plug.argument else None,
                    )
                    for plug in socket.outgoing
                    if plug.enabled
                ),
                siblings=tuple(
                    sorted(other.name for other in socket.queue.sockets if other.id != socket.id)
                )
                if socket.queue.type is QueueType.FANOUT
                else (),
            )
            for socket in sockets
        ),
    )


def test_load_processor_reads_what_the_objects_say(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a processor with joins, an error plug, queue arguments, plugs to
    # another processor, and disabled sockets and plugs
    _network(database, monkeypatch)
    # When its spec is loaded on a plain connection
    with database.connect() as connection:
        spec = load_processor(connection, "probe")
    # Then it is what the ORM objects describe, in the same order
    with database.transaction() as session:
        assert spec == _from_objects(session, "probe")
        # And a session serves as well as a connection
        assert load_processor(session, "probe") == spec
    join = {s.name: s for s in spec.sockets}["join"]
    assert (join.wait, join.join_arguments) == (True, ("one", "two"))
    assert join.route.exchange_type == "fanout"
    assert join.route.arguments == {"x-max-length": 5, "x-message-ttl": 1000}
    assert [s.name for s in spec.sockets] == ["errors", "join", "slow", "src"]
    assert [p.name for p in {s.name: s for s in spec.sockets}["src"].outgoing] == [
        "p-one",
        "p-out",
    ]
    assert (spec.concurrency, spec.retries) == (3, 2)
    # And its JSON form, which agents hand to the workers they start, round-trips
    assert spec_from_json(spec_to_json(spec)) == spec


def test_spec_from_json_refuses_what_is_not_a_spec() -> None:
    for text, message in [
        ("[]", "not a processor spec"),
        ('{"format": 1, "spec": {"name": "p"}}', "not a processor spec: KeyError"),
        ('{"format": 99, "spec": {}}', "format 99; this pyfi reads format 1"),
        ("{", "not a processor spec"),
    ]:
        with pytest.raises(InvalidValue, match=message):
            spec_from_json(text)


def test_load_processor_of_an_unknown_name_says_where_to_look(database: Database) -> None:
    # When a processor that does not exist is loaded
    with database.connect() as connection, pytest.raises(ProcessorNotFound) as caught:
        load_processor(connection, "nope")
    # Then the error names it and the listing that shows the existing ones
    assert caught.value.message == (
        "no processor named 'nope'; see `flow ls processors` for the existing ones"
    )


def _build(database: Database, tmp_path: Path, **options: Any) -> Worker:
    settings = load_settings(
        {
            "database_url": database.url,
            "broker_url": f"filesystem://{tmp_path / 'broker'}",
            "backend_url": f"sqlite:///{tmp_path / 'results.sqlite'}",
        },
        {},
    )
    worker_options = WorkerOptions(
        concurrency=0, path=PROBES, install_signals=False, record=False, events=False
    )
    worker = build_worker(settings, database, "probe", worker_options, **options)
    worker.backend.close()
    return worker


def _inspected(database: Database) -> dict[str, bool]:
    """Whether each task of processor `probe` has a recorded signature."""
    with database.transaction() as session:
        tasks = session.scalars(
            select(models.Task).join(models.Processor).where(models.Processor.name == "probe")
        )
        return {task.name: task.inspected is not None for task in tasks}


def test_signatures_are_recorded_only_once_the_worker_consumes(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a worker built without recording signatures
    _network(database, monkeypatch)
    worker = _build(database, tmp_path, record_signatures=False)
    assert worker.options.concurrency == 3  # none asked for: the processor's own
    assert not any(_inspected(database).values())
    # When signatures are to be recorded once it consumes
    thread = record_signatures_once_consuming(worker, database)
    # Then nothing is written before it does
    thread.join(0.2)
    assert thread.is_alive()
    assert not any(_inspected(database).values())
    # And each served function's signature is recorded once it does
    worker.ready.set()
    thread.join(10)
    assert not thread.is_alive()
    assert _inspected(database) == dict.fromkeys(
        ("identity", "add_two", "handle_error", "slow_once"), True
    )

    # When a restarted worker records them again
    writes: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            writes.append(statement)

    restarted = _build(database, tmp_path, record_signatures=False)
    restarted.ready.set()
    event.listen(database.engine, "before_cursor_execute", count)
    try:
        record_signatures_once_consuming(restarted, database).join(10)
    finally:
        event.remove(database.engine, "before_cursor_execute", count)
    # Then nothing is written
    assert writes == []


def test_signatures_failing_in_the_background_only_warn(
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a consuming worker, and a database without pyfi's tables to record in
    _network(database, monkeypatch)
    worker = _build(database, tmp_path, record_signatures=False)
    worker.ready.set()
    broken = Database(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    # When its signatures are recorded there
    with caplog.at_level(logging.WARNING, logger="pyfi.worker"):
        record_signatures_once_consuming(worker, broken).join(10)
    broken.dispose()
    # Then the worker's log says why, and nothing is raised
    [record] = caplog.records
    assert "could not record the function signatures of processor probe" in record.getMessage()
