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


def test_publish_then_tells_each_caller_once_its_messages_are_in_the_queue(
    broker_url: str,
) -> None:
    # Given a publishing thread and 100 callers that hand over two messages each and go on
    route = SocketRoute("handed", "ex.handed")
    publisher = BatchPublisher(broker_url)
    told: list[tuple[int, BaseException | None]] = []
    all_told = threading.Event()

    def callback(n: int) -> Any:
        def confirmed(error: BaseException | None) -> None:
            told.append((n, error))
            if len(told) == 100:
                all_told.set()

        return confirmed

    for n in range(100):
        pair = [(Message.new("handed", [2 * n + i]), route) for i in range(2)]
        publisher.publish_then(pair, callback(n))
    # When the publisher has worked through them
    assert all_told.wait(30)
    publisher.close()
    # Then each caller was told once, with no error, and every message is in the queue
    assert sorted(n for n, _ in told) == list(range(100))
    assert all(error is None for _, error in told)
    assert sorted(_drain(broker_url, route, 200)) == list(range(200))
    # And a closed publisher refuses at once instead of calling back
    with pytest.raises(BrokerUnavailable, match="publisher is closed"):
        publisher.publish_then([(Message.new("handed", [0]), route)], callback(0))


def test_publish_then_tells_the_caller_its_messages_were_not_confirmed() -> None:
    # Given a publisher whose broker is down, and a callback that itself raises
    publisher = BatchPublisher("amqp://guest:guest@127.0.0.1:1//")
    errors: list[BaseException | None] = []
    route = SocketRoute("s", "ex.s")

    def broken(error: BaseException | None) -> None:
        raise RuntimeError("a callback's own bug")

    # When messages are handed over
    publisher.publish_then([(Message.new("s", [1]), route)], broken)
    publisher.publish_then([(Message.new("s", [2]), route)], errors.append)
    publisher.close()
    # Then the caller learns they were not confirmed, despite the other callback's bug
    assert len(errors) == 1
    assert isinstance(errors[0], BrokerUnavailable | OSError)
