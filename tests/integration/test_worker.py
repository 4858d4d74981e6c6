"""The worker in-process on the embedded broker: what it does with its own faults."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pyfi.broker import Broker
from pyfi.config import load_settings
from pyfi.db.session import Database
from pyfi.dlq import list_dead_letters
from pyfi.worker.factory import build_worker
from pyfi.worker.telemetry import Telemetry
from pyfi.worker.worker import WorkerOptions
from tests.acceptance.mesh import EXAMPLES
from tests.conftest import Flow


def _explode(step: str, *_args: Any) -> None:
    if step == "running":
        raise RuntimeError("sink is broken")


def test_worker_sets_aside_a_message_its_own_code_fails_on(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an embedded network whose telemetry fails while a call starts
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
    options = WorkerOptions(path=EXAMPLES, install_signals=False, record=False, events=False)
    worker = build_worker(settings, database, "p", options)
    worker.telemetry = Telemetry("p", [_explode])
    thread = threading.Thread(target=worker.run)
    thread.start()
    assert worker.ready.wait(10)
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
    worker.stop()
    thread.join(10)
    assert [(x["id"], x["reason"]) for x in letters] == [
        (call.call_id, "worker error: RuntimeError: sink is broken")
    ]
    assert not thread.is_alive()
    # And nothing is left in the socket's queue
    broker = Broker(settings.broker_url)
    assert broker.get("echo") is None
    broker.close()
    database.dispose()


def test_filesystem_broker_two_folders_in_one_process_both_deliver(tmp_path: Path) -> None:
    # Given two embedded broker folders used from the same process (kombu keeps
    # exchange state per process, which once made the second folder drop messages)
    from pyfi.broker import SocketRoute
    from pyfi.message import Message

    route = SocketRoute("s.one", "pyfi.queue1")
    for folder in ("a", "b"):
        broker = Broker(f"filesystem://{tmp_path / folder}")
        broker.publish(Message.new("s.one", [folder]), route)
        broker.close()
    # Then each folder holds its own message
    for folder in ("a", "b"):
        broker = Broker(f"filesystem://{tmp_path / folder}")
        delivery = broker.get(route.queue)
        assert delivery is not None
        assert Message.decode(delivery.body).args == [folder]
        delivery.ack()
        broker.close()
