"""The worker in-process on the embedded broker: its own faults, and what it records."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pyfi.backend import open_backend
from pyfi.broker import Broker
from pyfi.config import Settings, load_settings
from pyfi.db.session import Database
from pyfi.dlq import list_dead_letters
from pyfi.errors import BrokerUnavailable, InvalidValue
from pyfi.worker.factory import build_worker, record_signatures_once_consuming
from pyfi.worker.telemetry import Telemetry
from pyfi.worker.worker import Worker, WorkerOptions
from tests.acceptance.mesh import EXAMPLES
from tests.conftest import Flow, requires_redis
from tests.relay import TcpRelay


def _explode_on(broken: str) -> Any:
    def sink(step: str, *_args: Any) -> None:
        if step == broken:
            raise RuntimeError("sink is broken")

    return sink


def _network(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[Settings, Database]:
    """An embedded network with one ``echo`` socket, and the settings to reach it."""
    from pyfi.db import schema

    database = Database(sqlite_url)
    schema.upgrade(database)
    flow = Flow(sqlite_url, monkeypatch)
    flow("add", "queue", "-n", "q")
    flow("add", "processor", "-n", "p", "-g", "g", "-m", "pyfi_examples.sample")
    flow("add", "socket", "-n", "echo", "-q", "q", "-pn", "p", "-t", "do_this")
    settings = load_settings(
        {
            "database_url": sqlite_url,
            "broker_url": f"filesystem://{tmp_path / 'broker'}",
            "backend_url": f"sqlite:///{tmp_path / 'results.sqlite'}",
        },
        {},
    )
    return settings, database


def _running_worker(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch, broken_step: str
) -> tuple[Settings, Database, Worker, threading.Thread]:
    """A worker serving :func:`_network`, whose telemetry fails on ``broken_step``."""
    settings, database = _network(tmp_path, sqlite_url, monkeypatch)
    worker, thread = _start_worker(settings, database, _explode_on(broken_step))
    return settings, database, worker, thread


def _start_worker(
    settings: Settings, database: Database, sink: Any
) -> tuple[Worker, threading.Thread]:
    """A worker for processor ``p`` running in a thread, its telemetry going to ``sink`` only."""
    options = WorkerOptions(path=EXAMPLES, install_signals=False, record=False, events=False)
    worker = build_worker(settings, database, "p", options)
    worker.telemetry = Telemetry("p", [sink])
    thread = threading.Thread(target=worker.run)
    thread.start()
    assert worker.ready.wait(10)
    return worker, thread


def _stop_with_empty_queue(worker: Worker, thread: threading.Thread, settings: Settings) -> None:
    """Stop ``worker``; it must finish within 10 s and leave the ``echo`` queue empty."""
    worker.stop()
    thread.join(10)
    assert not thread.is_alive()
    broker = Broker(settings.broker_url)
    assert broker.get("echo") is None
    broker.close()


def test_worker_sets_aside_a_message_its_own_code_fails_on(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an embedded network whose telemetry fails while a call starts
    settings, database, worker, thread = _running_worker(
        tmp_path, sqlite_url, monkeypatch, "started"
    )
    # When a call arrives
    from pyfi.client.calls import Client

    with Client(settings, database) as client:
        call = client.send("echo", ["boom"])
        # Then it is dead-lettered with the worker's reason, and the worker keeps going
        deadline = time.monotonic() + 10
        letters: list[dict[str, Any]] = []
        while not letters and time.monotonic() < deadline:
            letters = list_dead_letters(settings.broker_url, "echo")
            time.sleep(0.05)
    # And the worker stops with nothing left in the socket's queue
    _stop_with_empty_queue(worker, thread, settings)
    assert [(x["id"], x["reason"]) for x in letters] == [
        (call.call_id, "worker error: RuntimeError: sink is broken")
    ]
    database.dispose()


def test_a_call_whose_finish_cannot_be_reported_is_still_done_and_acknowledged(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a worker whose telemetry fails when a call has finished (its result stored)
    settings, database, worker, thread = _running_worker(
        tmp_path, sqlite_url, monkeypatch, "postrun"
    )
    from pyfi.client.calls import Client

    with Client(settings, database) as client:
        # When a call runs
        call = client.send("echo", ["fine"])
        # Then its result is there
        assert client.result(call.call_id, 10) is not None
    # And the worker stops at once: the message was acknowledged, not left in flight
    _stop_with_empty_queue(worker, thread, settings)
    assert list_dead_letters(settings.broker_url, "echo") == []
    database.dispose()


def test_a_call_whose_downstream_messages_are_not_confirmed_publishes_them_again_without_running(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a network where echo's result feeds again, and a publisher whose
    # first hand-over is not confirmed
    from pyfi.worker import publishing
    from pyfi.worker import worker as worker_module

    monkeypatch.setattr(worker_module, "INFRASTRUCTURE_BACKOFF_S", 0.05)
    settings, database = _network(tmp_path, sqlite_url, monkeypatch)
    flow = Flow(sqlite_url, monkeypatch)
    flow("add", "socket", "-n", "again", "-q", "q", "-pn", "p", "-t", "do_this")
    flow("add", "plug", "-n", "echo-again", "-q", "q", "-s", "echo", "-t", "again")
    backend = open_backend(settings.backend_url)
    stored_when_refused: list[tuple[str, str | None]] = []
    real = publishing.BatchPublisher.publish_then

    def refuse_first(self: Any, items: Any, callback: Any) -> None:
        if not stored_when_refused:
            parent = items[0][0].parent_id
            stored_when_refused.append((parent, backend.get(parent)))
            callback(BrokerUnavailable("not confirmed (injected)"))
            return
        real(self, items, callback)

    monkeypatch.setattr(publishing.BatchPublisher, "publish_then", refuse_first)
    steps: list[tuple[str, str]] = []
    worker, thread = _start_worker(
        settings, database, lambda step, socket, *_: steps.append((step, socket.name))
    )
    from pyfi.client.calls import Client

    with Client(settings, database) as client:
        # When echo is called
        call = client.send("echo", ["twice"])
        # Then its result is there, and the plugged call ran after it
        assert client.result(call.call_id, 10) == "Do this: twice"
        deadline = time.monotonic() + 10
        while ("postrun", "again") not in steps and time.monotonic() < deadline:
            time.sleep(0.05)
    _stop_with_empty_queue(worker, thread, settings)
    backend.close()
    database.dispose()
    # And the unconfirmed attempt stored nothing: its messages were published
    # again while it was held, so echo ran once, finished once, and its
    # plugged call ran once
    assert stored_when_refused == [(call.call_id, None)]
    runs = [step for step, socket in steps if socket == "echo" and step in ("started", "running")]
    assert runs == ["started"], steps
    assert steps.count(("postrun", "echo")) == 1
    assert steps.count(("postrun", "again")) == 1


def test_a_worker_refuses_a_result_ttl_below_one_second(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, database = _network(tmp_path, sqlite_url, monkeypatch)
    options = WorkerOptions(path=EXAMPLES, install_signals=False, result_ttl_s=0)
    with pytest.raises(InvalidValue, match="at least 1 second"):
        build_worker(settings, database, "p", options)
    database.dispose()


def _join_network(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's join: ``source`` feeds ``adder.one`` directly and ``adder.two`` via ``middle``."""
    flow = Flow(sqlite_url, monkeypatch)
    flow("add", "socket", "-n", "source", "-q", "q", "-pn", "p", "-t", "do_something")
    flow("add", "socket", "-n", "middle", "-q", "q", "-pn", "p", "-t", "do_this")
    flow("add", "socket", "-n", "adder", "-q", "q", "-pn", "p", "-t", "add_two", "--wait")
    flow("add", "plug", "-n", "to-middle", "-q", "q", "-s", "source", "-t", "middle")
    flow("add", "plug", "-n", "to-one", "-q", "q", "-s", "source", "-t", "adder", "-a", "one")
    flow("add", "plug", "-n", "to-two", "-q", "q", "-s", "middle", "-t", "adder", "-a", "two")


def _recorded_calls(database: Database, tracking_id: str) -> list[tuple[str, str | None, str]]:
    """(socket, argument, state) of every call recorded for one flow run."""
    import uuid

    from sqlalchemy import select

    from pyfi.db.models import Call

    with database.connect() as connection:
        rows = connection.execute(
            select(Call.name, Call.argument, Call.state).where(
                Call.tracking_id == uuid.UUID(tracking_id)
            )
        )
        found = [(name, argument, str(state)) for name, argument, state in rows]
    return sorted(found, key=lambda row: (row[0], row[1] or ""))


def test_every_delivery_to_a_join_is_recorded_finished_the_one_that_fires_it_too(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a join fed by two plugs, and a worker recording its calls
    settings, database = _network(tmp_path, sqlite_url, monkeypatch)
    _join_network(sqlite_url, monkeypatch)
    options = WorkerOptions(path=EXAMPLES, install_signals=False, events=False)
    worker = build_worker(settings, database, "p", options)
    thread = threading.Thread(target=worker.run)
    thread.start()
    assert worker.ready.wait(10)
    from pyfi.client.calls import Client
    from pyfi.message import derived_id

    with Client(settings, database) as client:
        # When the source is called and the join fires
        call = client.send("source", ["hello"])
        joined = client.result(derived_id(call.tracking_id, "adder", "join"), 10)
    # And the worker stops, writing what it recorded
    _stop_with_empty_queue(worker, thread, settings)
    # Then every call of the run is finished: both deliveries, not only the
    # one that waited, and the join's own call
    assert joined == "Message:helloDo this: Message:hello"
    assert _recorded_calls(database, call.tracking_id) == [
        ("adder", None, "finished"),
        ("adder", "one", "finished"),
        ("adder", "two", "finished"),
        ("middle", None, "finished"),
        ("source", None, "finished"),
    ]
    # And each delivery keeps the instant it was received, before it joined
    assert _delivery_spans(database, call.tracking_id) == [("one", True), ("two", True)]
    database.dispose()


def _delivery_spans(database: Database, tracking_id: str) -> list[tuple[str, bool]]:
    """(argument, received before finished) of every join delivery of one flow run."""
    import uuid

    from sqlalchemy import select

    from pyfi.db.models import Call

    with database.connect() as connection:
        rows = connection.execute(
            select(Call.argument, Call.received, Call.finished).where(
                Call.tracking_id == uuid.UUID(tracking_id), Call.argument.is_not(None)
            )
        )
        return sorted((argument, received < finished) for argument, received, finished in rows)


@pytest.mark.parametrize("freeze_heap", [True, False])
def test_a_worker_owning_its_process_exempts_start_up_objects_from_garbage_collection(
    tmp_path: Path,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    freeze_heap: bool,
) -> None:
    import gc

    # Given a recording worker, told whether it owns its process
    caplog.set_level(logging.DEBUG, logger="pyfi.worker")
    settings, database = _network(tmp_path, sqlite_url, monkeypatch)
    options = WorkerOptions(
        path=EXAMPLES, install_signals=False, events=False, freeze_heap=freeze_heap
    )
    assert gc.get_freeze_count() == 0
    worker = build_worker(settings, database, "p", options, record_signatures=False)
    thread = threading.Thread(target=worker.run)
    try:
        # When it starts consuming, records its signatures, and records its first call
        thread.start()
        assert worker.ready.wait(10)
        frozen_at_start = gc.get_freeze_count()
        record_signatures_once_consuming(worker, database).join(10)
        from pyfi.client.calls import Client

        with Client(settings, database) as client:
            call = client.send("echo", ["hi"])
            assert client.result(call.call_id, 10) == "Do this: hi"
        _stop_with_empty_queue(worker, thread, settings)
        frozen = gc.get_freeze_count()
    finally:
        gc.unfreeze()  # the test process's heap is the suite's
        database.dispose()
    steps = [
        r.getMessage().split(":")[0] for r in caplog.records if "exempt from" in r.getMessage()
    ]
    if freeze_heap:
        # Then what exists once it consumes is frozen, and more after each later start-up step
        assert steps[0] == "consuming"
        assert sorted(steps[1:]) == ["first calls recorded", "signatures recorded"]
        assert 0 < frozen_at_start < frozen
    else:
        # Then a worker embedded in someone else's process leaves the collector alone
        assert steps == []
        assert frozen == 0


@pytest.mark.redis
@requires_redis
def test_a_result_the_store_refuses_is_stored_later_without_running_the_call_again(
    tmp_path: Path, sqlite_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a worker whose result store (Redis) is reached through a relay
    settings, database = _network(tmp_path, sqlite_url, monkeypatch)
    host, port = redis_url.split("//")[1].split("/", maxsplit=1)[0].split(":")
    with TcpRelay(host, int(port)) as relay:
        relayed = dataclasses.replace(settings, backend_url=relay.url_of(redis_url))
        steps: list[tuple[str, str]] = []
        worker, thread = _start_worker(
            relayed, database, lambda step, socket, *_: steps.append((step, socket.name))
        )
        from pyfi.client.calls import Client

        direct = dataclasses.replace(settings, backend_url=redis_url)
        with Client(direct, database) as client:
            # When the store goes away and echo is called meanwhile
            relay.cut()
            call = client.send("echo", ["once"])
            deadline = time.monotonic() + 10
            while not any(step in ("started", "running") for step, _ in steps):
                assert time.monotonic() < deadline, steps
                time.sleep(0.05)
            time.sleep(2.5)  # the store fails, and fails again, while the call is done
            # Then, once the store is back, the result is there
            relay.restore()
            assert client.result(call.call_id, 15) == "Do this: once"
        _stop_with_empty_queue(worker, thread, settings)
    database.dispose()
    # And the call ran once: its message was held, not requeued to run again
    runs = [step for step, socket in steps if socket == "echo" and step in ("started", "running")]
    assert runs == ["started"], steps
    assert steps.count(("postrun", "echo")) == 1
