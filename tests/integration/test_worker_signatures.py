"""A starting worker records its functions' signatures, once, and never fails for it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from pyfi.config import load_settings
from pyfi.db import models, schema
from pyfi.db.session import Database
from pyfi.network.signature import record_processor_signatures
from pyfi.wiring import load_processor
from pyfi.worker.factory import build_worker
from pyfi.worker.worker import Worker, WorkerOptions
from tests.acceptance.mesh import PROBES
from tests.conftest import Flow, requires_postgres


def _probe_network(database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """Processor `probe`: two sockets on add_two, one on slow_once, a plug naming 'three'."""
    flow = Flow(database.url, monkeypatch)
    flow("add", "queue", "-n", "q")
    flow("add", "processor", "-n", "probe", "-g", "file:///probes", "-m", "probe")
    for name, task in [("src", "identity"), ("join", "add_two"), ("join2", "add_two")]:
        flow("add", "socket", "-n", name, "-q", "q", "-pn", "probe", "-t", task)
    flow("add", "socket", "-n", "slow", "-q", "q", "-pn", "probe", "-t", "slow_once")
    flow("add", "plug", "-n", "p1", "-q", "q", "-s", "src", "-t", "join", "-a", "three")


def _build(database: Database, tmp_path: Path) -> Worker:
    settings = load_settings(
        {
            "database_url": database.url,
            "broker_url": f"filesystem://{tmp_path / 'broker'}",
            "backend_url": f"sqlite:///{tmp_path / 'results.sqlite'}",
        },
        {},
    )
    options = WorkerOptions(path=PROBES, install_signals=False, record=False, events=False)
    worker = build_worker(settings, database, "probe", options)
    worker.backend.close()
    return worker


def _tasks(database: Database) -> dict[str, Any]:
    """Each task's arguments, source head and stamps."""
    with database.transaction() as session:
        return {
            task.name: {
                "arguments": {
                    a.name: (a.position, a.kind, a.required)
                    for a in sorted(task.arguments, key=lambda a: a.name)
                },
                "source": (task.source or "").splitlines()[:1],
                "inspected": task.inspected,
                "updated": [task.updated, *(a.updated for a in task.arguments)],
            }
            for task in session.scalars(select(models.Task))
        }


def test_build_worker_records_signatures_then_writes_nothing(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a processor whose tasks only plugs have described so far
    _probe_network(database, monkeypatch)
    # When a worker for it is built
    _build(database, tmp_path)
    # Then each function's parameters and source are recorded on its task
    tasks = _tasks(database)
    assert tasks["add_two"]["arguments"] == {
        "one": (0, "positional_or_keyword", True),
        "three": (None, None, None),  # named only by plug p1: kept, not in the signature
        "two": (1, "positional_or_keyword", True),
    }
    assert tasks["slow_once"]["arguments"] == {
        "seconds": (1, "positional_or_keyword", False),
        "value": (0, "positional_or_keyword", True),
    }
    assert tasks["identity"]["arguments"] == {"value": (0, "positional_or_keyword", True)}
    assert tasks["add_two"]["source"] == ["def add_two(one: Any, two: Any) -> Any:"]
    assert all(task["inspected"] is not None for task in tasks.values())

    # When a second worker is built (a restart)
    writes: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            writes.append(statement)

    event.listen(database.engine, "before_cursor_execute", count)
    try:
        _build(database, tmp_path)
    finally:
        event.remove(database.engine, "before_cursor_execute", count)
    # Then nothing is written, so no agent is woken
    assert writes == []
    assert _tasks(database) == tasks


def test_record_processor_signatures_only_warns_when_the_database_fails(
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a processor's spec and functions, and a database without pyfi's tables
    _probe_network(database, monkeypatch)
    with database.transaction() as session:
        spec = load_processor(session, "probe")
    from tests.processors import probe

    functions = {"join": probe.add_two, "slow": probe.slow_once}
    broken = Database(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    # When signatures are recorded there
    with caplog.at_level(logging.WARNING, logger="pyfi.worker"):
        record_processor_signatures(broken, spec, functions)
    broken.dispose()
    # Then it does not raise, and says why on the worker's log
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "could not record the function signatures of processor probe" in record.getMessage()


@pytest.mark.postgres
@requires_postgres
def test_two_workers_recording_the_same_signatures_at_once_both_succeed_quietly(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # (PostgreSQL, where two workers' transactions run side by side; SQLite lets one writer in.)
    # Given a processor's spec and functions, and another worker of it that
    # records the same signatures just before this one's transaction writes
    database = Database(postgres_url)
    schema.upgrade(database)
    _probe_network(database, monkeypatch)
    with database.transaction() as session:
        spec = load_processor(session, "probe")
    from pyfi.network import signature
    from tests.processors import probe

    functions = {"join": probe.add_two, "slow": probe.slow_once}
    other = Database(database.url)
    real_record_all = signature._record_all
    raced: list[bool] = []

    def other_worker_first(session: Any, *args: Any) -> list[str]:
        def record_theirs(*_: Any) -> None:
            if not raced:
                raced.append(True)
                with other.transaction() as theirs:
                    real_record_all(theirs, spec, functions)

        event.listen(session, "before_flush", record_theirs)
        return real_record_all(session, spec, functions)

    monkeypatch.setattr(signature, "_record_all", other_worker_first)
    # When this worker records them
    with caplog.at_level(logging.INFO, logger="pyfi.worker"):
        record_processor_signatures(database, spec, functions)
    other.dispose()
    # Then the other's rows came first, this one warned of nothing, and the
    # signatures are recorded once
    assert raced == [True]
    assert [r.getMessage() for r in caplog.records] == []
    with database.transaction() as session:
        names = session.scalars(
            select(models.Argument.name).join(models.Task).where(models.Task.name == "add_two")
        ).all()
    database.dispose()
    assert sorted(names) == ["one", "three", "two"]
