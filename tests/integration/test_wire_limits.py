"""Hostile messages on a real broker: each dead-lettered once with its reason, the worker unharmed.

A worker runs in-process on the embedded broker and on RabbitMQ. Hostile
bodies go straight into its socket's queue, as anyone able to publish to the
broker could put them there; valid calls sent afterwards must still be
served, and on stopping the queue must be empty (nothing requeued forever).
"""

from __future__ import annotations

import bz2
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kombu import Exchange, Queue

from pyfi.broker import Broker, SocketRoute
from pyfi.client.calls import Client
from pyfi.config import Settings, load_settings
from pyfi.db import schema
from pyfi.db.session import Database
from pyfi.dlq import list_dead_letters
from pyfi.errors import CallFailed
from pyfi.message import CONTENT_TYPE, Message
from pyfi.wiring import load_processor
from pyfi.worker.factory import build_worker
from pyfi.worker.worker import Worker, WorkerOptions
from pyfi.workflow.plan import route_to_json
from tests.acceptance.mesh import PROBES
from tests.conftest import Flow


def _network(
    tmp_path: Path, sqlite_url: str, broker_url: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[Settings, Database]:
    """Processor ``p`` (tests/processors/exits.py): ``echo``, ``quit``, and two fanout sockets."""
    database = Database(sqlite_url)
    schema.upgrade(database)
    flow = Flow(sqlite_url, monkeypatch)
    flow("add", "queue", "-n", "q")
    flow("add", "queue", "-n", "fan", "-t", "fanout")
    flow("add", "processor", "-n", "p", "-g", "g", "-m", "exits")
    flow("add", "socket", "-n", "echo", "-q", "q", "-pn", "p", "-t", "echo")
    flow("add", "socket", "-n", "quit", "-q", "q", "-pn", "p", "-t", "exit_now")
    flow("add", "socket", "-n", "left", "-q", "fan", "-pn", "p", "-t", "echo")
    flow("add", "socket", "-n", "right", "-q", "fan", "-pn", "p", "-t", "echo")
    settings = load_settings(
        {
            "database_url": sqlite_url,
            "broker_url": broker_url,
            "backend_url": f"sqlite:///{tmp_path / 'results.sqlite'}",
        },
        {},
    )
    return settings, database


def _start_worker(settings: Settings, database: Database) -> tuple[Worker, threading.Thread]:
    options = WorkerOptions(path=PROBES, install_signals=False, record=False, events=False)
    worker = build_worker(settings, database, "p", options, record_signatures=False)
    thread = threading.Thread(target=worker.run)
    thread.start()
    assert worker.ready.wait(10)
    return worker, thread


def _route(database: Database, socket: str) -> SocketRoute:
    with database.connect() as connection:
        spec = load_processor(connection, "p")
    return next(s.route for s in spec.sockets if s.name == socket)


def _send_raw(
    settings: Settings, route: SocketRoute, body: bytes, headers: dict[str, Any] | None = None
) -> None:
    """Publish ``body`` as is to the socket's exchange, as any broker client could."""
    broker = Broker(settings.broker_url)
    try:
        broker.declare(route)
        broker.producer.publish(
            body,
            exchange=route.exchange,
            routing_key=route.routing_key,
            content_type=CONTENT_TYPE,
            content_encoding="utf-8",
            headers=headers or {},
            delivery_mode=2,
        )
    finally:
        broker.close()


def _envelope(**fields: Any) -> dict[str, Any]:
    return Message.new("echo", ["hostile"]).to_dict() | fields


def _encoded(**fields: Any) -> bytes:
    return json.dumps(_envelope(**fields)).encode()


def _letters(settings: Settings, socket: str, count: int) -> list[dict[str, Any]]:
    """The socket's dead letters, once there are ``count`` (or after 20 s)."""
    deadline = time.monotonic() + 20
    letters = list_dead_letters(settings.broker_url, socket)
    while len(letters) < count and time.monotonic() < deadline:
        time.sleep(0.1)
        letters = list_dead_letters(settings.broker_url, socket)
    return letters


def _stop(worker: Worker, thread: threading.Thread, settings: Settings, route: SocketRoute) -> None:
    """Stop ``worker``: within 10 s, and with nothing left in (or requeued to) the route's queue."""
    worker.stop()
    thread.join(10)
    assert not thread.is_alive()
    broker = Broker(settings.broker_url)
    try:
        channel = broker.connection.default_channel
        queue = Queue(
            route.queue,
            exchange=Exchange(route.exchange, type=route.exchange_type),
            routing_key=route.routing_key,
            queue_arguments=route.queue_arguments(),
            channel=channel,
        )
        assert queue.get(no_ack=False) is None
    finally:
        broker.close()


def _hostile_bodies(database: Database) -> list[tuple[str, bytes, dict[str, Any]]]:
    """(reason expected, body, headers) of each hostile message of the issue."""
    elsewhere = route_to_json(_route(database, "echo")) | {"socket": "nowhere"}
    next_step = {"kind": "call", "id": "0.1", "socket": "nowhere", "route": elsewhere}
    deep = b'{"args": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    return [
        (
            "an integer of 5000 digits",
            _encoded(args=[]).replace(b'"args": []', b'"args": [' + b"7" * 5000 + b"]"),
            {},
        ),
        ("nests deeper than the limit", deep, {}),
        (
            "compressed ('application/x-bz2')",
            bz2.compress(_encoded()),
            {"compression": "application/x-bz2"},
        ),
        (
            "1000000000 branches",
            _encoded(flow={"frames": [{"kind": "parallel", "id": "0", "index": 0, "size": 10**9}]}),
            {},
        ),
        ("'os.system', which does not share the queue of echo", _encoded(socket="os.system"), {}),
        ("protocol version 0 is not one this worker knows", _encoded(version=0), {}),
        ("protocol version -1 is not one this worker knows", _encoded(version=-1), {}),
        (
            "'nowhere', which is not in the model",
            _encoded(flow={"frames": [{"kind": "pipeline", "rest": [next_step]}]}),
            {},
        ),
    ]


def test_hostile_messages_are_dead_lettered_once_and_the_worker_serves_on(
    tmp_path: Path, sqlite_url: str, broker_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a worker serving echo
    settings, database = _network(tmp_path, sqlite_url, broker_url, monkeypatch)
    worker, thread = _start_worker(settings, database)
    hostile = _hostile_bodies(database)
    route = _route(database, "echo")
    try:
        # When each hostile message of the issue reaches echo's queue
        for _reason, body, headers in hostile:
            _send_raw(settings, route, body, headers)
        # Then a valid call sent afterwards is served
        with Client(settings, database) as client:
            call = client.send("echo", ["still here"])
            assert client.result(call.call_id, 20) == "still here"
        # And each hostile message is dead-lettered with its reason
        letters = _letters(settings, "echo", len(hostile))
    finally:
        _stop(worker, thread, settings, route)
    # And only once: none was requeued, none is left in the queue
    letters = list_dead_letters(settings.broker_url, "echo")
    reasons = sorted(letter["reason"] for letter in letters)
    assert len(reasons) == len(hostile), reasons
    for expected, _body, _headers in hostile:
        assert sum(expected in reason for reason in reasons) == 1, (expected, reasons)
    assert all(reason.startswith("undecodable message: ") for reason in reasons)
    # And a letter keeps at most a bounded part of a large body
    assert max(len(letter["raw"] or "") for letter in letters) <= 64 * 1024
    database.dispose()


def test_a_function_raising_system_exit_fails_like_any_other(
    tmp_path: Path, sqlite_url: str, broker_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a worker whose quit socket raises SystemExit
    settings, database = _network(tmp_path, sqlite_url, broker_url, monkeypatch)
    worker, thread = _start_worker(settings, database)
    try:
        with Client(settings, database) as client:
            # When it is called
            call = client.send("quit", [3])
            # Then the call fails with SystemExit, as with any exception
            with pytest.raises(CallFailed, match="SystemExit"):
                client.result(call.call_id, 20)
            # And the worker goes on serving
            after = client.send("echo", ["after"])
            assert client.result(after.call_id, 20) == "after"
        # And the call is dead-lettered once, as a failure (no requeue, no loop)
        letters = _letters(settings, "quit", 1)
    finally:
        _stop(worker, thread, settings, _route(database, "quit"))
    assert [(x["id"], x["reason"], x["error"]["type"]) for x in letters] == [
        (call.call_id, "failed after retries", "SystemExit")
    ]
    assert list_dead_letters(settings.broker_url, "quit") == letters
    database.dispose()


def test_a_call_for_a_fanout_sibling_runs_as_a_copy_on_each_socket(
    tmp_path: Path, sqlite_url: str, broker_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two sockets on one fanout queue object
    settings, database = _network(tmp_path, sqlite_url, broker_url, monkeypatch)
    worker, thread = _start_worker(settings, database)
    try:
        with Client(settings, database) as client:
            # When right is called
            call = client.send("right", ["both"])
            # Then right answers, and nothing was refused as a call for a foreign socket
            assert client.result(call.call_id, 20) == "both"
    finally:
        _stop(worker, thread, settings, _route(database, "left"))
    assert list_dead_letters(settings.broker_url, "left") == []
    assert list_dead_letters(settings.broker_url, "right") == []
    database.dispose()


def test_a_flow_s_next_call_goes_along_the_model_s_route_not_the_message_s(
    tmp_path: Path, sqlite_url: str, broker_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a two-step pipeline on echo whose next step carries a hostile route
    # (queue arguments of the wrong type, which the broker would refuse)
    settings, database = _network(tmp_path, sqlite_url, broker_url, monkeypatch)
    worker, thread = _start_worker(settings, database)
    route = _route(database, "echo")
    hostile = route_to_json(route) | {"arguments": {"x-max-length": "many", "x-expires": -1}}
    next_step = {"kind": "call", "id": "0.1", "socket": "echo", "route": hostile}
    first = Message.new(
        "echo", ["through"], flow={"frames": [{"kind": "pipeline", "rest": [next_step]}]}
    )
    try:
        # When its first call arrives
        _send_raw(settings, route, first.encode())
        # Then the flow finishes: its next call went along echo's route in the model
        with Client(settings, database) as client:
            assert client.result(first.tracking_id, 20) == "through"
    finally:
        _stop(worker, thread, settings, route)
    assert list_dead_letters(settings.broker_url, "echo") == []
    database.dispose()
