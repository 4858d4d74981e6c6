"""A consuming connection's wait ends when another thread has work for it."""

from __future__ import annotations

import threading
import time

from pyfi.broker import Broker
from pyfi.broker.wakeup import Wakeup


def test_drain_returns_when_another_thread_sets_the_wakeup(amqp_url: str) -> None:
    # Given a connection to RabbitMQ with nothing to deliver, and an armed wakeup
    broker = Broker(amqp_url)
    wakeup = Wakeup()
    assert broker.wakes_on_socket
    wakeup.arm()
    # When another thread sets the wakeup while the connection waits up to a minute
    threading.Timer(0.2, wakeup.set).start()
    started = time.monotonic()
    broker.drain(60.0, wakeup)
    waited = time.monotonic() - started
    # Then the wait ended with the set, not with the timeout
    assert waited < 30, waited
    broker.close()
    wakeup.close()


def test_the_embedded_broker_has_no_socket_to_wake_on(tmp_path: object) -> None:
    # Given the embedded broker
    broker = Broker(f"filesystem://{tmp_path}/broker")
    # Then a worker must poll it (it cannot wait on a socket)
    assert not broker.wakes_on_socket
    broker.close()
