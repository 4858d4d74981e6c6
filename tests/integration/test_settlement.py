"""Settling a consumer's messages out of order, in as few frames as possible, on both brokers."""

from __future__ import annotations

import time

import pytest
from kombu.message import Message as KombuMessage

from pyfi.broker import Broker, SocketRoute
from pyfi.message import Message
from pyfi.worker.settlement import ACK, REQUEUE, Settlement


def _receive(
    broker: Broker, route: SocketRoute, count: int, wait_s: float = 10
) -> list[KombuMessage]:
    """Up to ``count`` deliveries within ``wait_s``, left unacknowledged."""
    received: list[KombuMessage] = []
    consumer = broker.consumer([route], received.append, prefetch=count)
    deadline = time.monotonic() + wait_s
    while len(received) < count and time.monotonic() < deadline:
        broker.drain(0.1)
    consumer.cancel()
    return received


def _left_in(broker_url: str, route: SocketRoute) -> list[int]:
    """What a new connection finds in the queue (within a second)."""
    broker = Broker(broker_url)
    try:
        left = _receive(broker, route, 100, wait_s=1.0)
        for delivery in left:
            delivery.ack()
        return sorted(Message.decode(delivery.body).args[0] for delivery in left)
    finally:
        broker.close()


def test_settlement_acks_runs_at_once_and_stragglers_alone(broker_url: str) -> None:
    # Given ten delivered, unacknowledged calls
    route = SocketRoute("settle", "ex.settle")
    broker = Broker(broker_url)
    broker.publish_many((Message.new("settle", [n]), route) for n in range(10))
    deliveries = _receive(broker, route, 10)
    assert len(deliveries) == 10
    settlement = Settlement(batch=broker.acks_multiple)
    for delivery in deliveries:
        settlement.received(delivery)

    # When 0-3 finish, 4 runs on, 5 fails over (requeue), 6-9 finish; then 4 finishes
    done = [(deliveries[n], ACK) for n in (3, 1, 0, 2, 6, 7, 8, 9)]
    frames = settlement.settle([*done, (deliveries[5], REQUEUE)])
    assert len(settlement) == 1
    frames += settlement.settle([(deliveries[4], ACK)])
    broker.close()

    # Then only the requeued call is left, and AMQP needed fewer frames than messages
    assert len(settlement) == 0
    assert _left_in(broker_url, route) == [5]
    assert frames == (6 if broker.acks_multiple else 9)


@pytest.mark.parametrize("together", [True, False])
def test_settlement_tells_fanout_copies_apart(broker_url: str, together: bool) -> None:
    # Given the two copies a fanout exchange made of one call (on the embedded
    # broker they carry the same delivery tag)
    first, second = SocketRoute("fan1", "ex.fan", "fanout"), SocketRoute("fan2", "ex.fan", "fanout")
    broker = Broker(broker_url)
    broker.declare(second)
    broker.publish(Message.new("fan1", [7]), first)
    received: list[KombuMessage] = []
    consumer = broker.consumer([first, second], received.append, prefetch=10)
    deadline = time.monotonic() + 10
    while len(received) < 2 and time.monotonic() < deadline:
        broker.drain(0.1)
    consumer.cancel()
    assert len(received) == 2
    settlement = Settlement(batch=broker.acks_multiple)
    for delivery in received:
        settlement.received(delivery)
    # When both finish, in one pass or one after the other
    if together:
        settlement.settle([(received[1], ACK), (received[0], ACK)])
    else:
        settlement.settle([(received[1], ACK)])
        settlement.settle([(received[0], ACK)])
    broker.close()
    # Then both are settled and neither comes back
    assert len(settlement) == 0
    assert _left_in(broker_url, first) == []
    assert _left_in(broker_url, second) == []
