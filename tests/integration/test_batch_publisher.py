"""A worker's publishing thread: many threads' messages, confirmed together, on both brokers."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from pyfi.broker import Broker, SocketRoute
from pyfi.errors import BrokerUnavailable
from pyfi.message import Message
from pyfi.worker.publishing import BatchPublisher


def _drain(broker_url: str, route: SocketRoute, expected: int) -> list[int]:
    """The arguments of the messages in the socket's queue (waiting up to 10 s for them)."""
    broker = Broker(broker_url)
    received: list[int] = []

    def take(delivery: Any) -> None:
        received.append(Message.decode(delivery.body).args[0])
        delivery.ack()

    try:
        consumer = broker.consumer([route], take, prefetch=100)
        deadline = time.monotonic() + 10
        while len(received) < expected and time.monotonic() < deadline:
            broker.drain(0.1)
        broker.drain(0.3)  # and nothing more
        consumer.cancel()
        return received
    finally:
        broker.close()


def test_batch_publisher_confirms_every_thread_its_own_messages(broker_url: str) -> None:
    # Given a publishing thread and eight threads with 50 messages each, singly and in pairs
    route = SocketRoute("batched", "ex.batched")
    publisher = BatchPublisher(broker_url)
    returned: list[int] = []

    def send(first: int) -> None:
        for n in range(first, first + 50, 2):
            publisher.publish(Message.new("batched", [n]), route)
            publisher.publish_many([(Message.new("batched", [n + 1]), route)])
        returned.append(first)

    threads = [threading.Thread(target=send, args=(t * 50,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    publisher.close()
    # Then every thread returned, and every message is in the queue, once
    assert sorted(returned) == [t * 50 for t in range(8)]
    assert sorted(_drain(broker_url, route, 400)) == list(range(400))
    # And a closed publisher refuses, in words
    with pytest.raises(BrokerUnavailable, match="publisher is closed"):
        publisher.publish(Message.new("batched", [0]), route)


def test_batch_publisher_reports_a_broker_that_cannot_be_reached() -> None:
    # Given a publisher whose broker is down
    publisher = BatchPublisher("amqp://guest:guest@127.0.0.1:1//")
    # When a message is published, then the caller learns it was not confirmed
    with pytest.raises(BrokerUnavailable):
        publisher.publish(Message.new("s", [1]), SocketRoute("s", "ex.s"))
    publisher.close()
