"""Broker topology on RabbitMQ: user queue arguments apply, and nothing is silently dropped."""

from __future__ import annotations

import pytest

from pyfi.broker import Broker, SocketRoute
from pyfi.message import Message
from pyfi.worker.deadletter import read_dead_letter
from tests.conftest import requires_rabbitmq

pytestmark = [pytest.mark.rabbitmq, requires_rabbitmq]


def test_topology_overflow_goes_to_the_dead_letter_queue(amqp_url: str) -> None:
    # Given a socket whose queue object allows one message at most
    route = SocketRoute("capped", "capped.exchange", "direct", arguments={"x-max-length": 1})
    broker = Broker(amqp_url)
    # When three calls are published and nobody consumes
    sent = [Message.new("capped", [n]) for n in range(3)]
    for message in sent:
        broker.publish(message, route)
    # Then the queue keeps the newest, and the two it pushed out are dead letters, not lost
    kept = broker.get(route.queue)
    assert kept is not None
    assert Message.decode(kept.body).call_id == sent[2].call_id
    dead = [broker.get(route.dead_letter_queue) for _ in range(3)]
    assert [Message.decode(d.body).call_id for d in dead if d is not None] == [
        sent[0].call_id,
        sent[1].call_id,
    ]
    broker.close()


def test_topology_queue_without_arguments_keeps_everything(amqp_url: str) -> None:
    # Given a queue object with nothing set (no TTL, no limit)
    route = SocketRoute("plain", "plain.exchange", "direct")
    broker = Broker(amqp_url)
    for n in range(50):
        broker.publish(Message.new("plain", [n]), route)
    # Then every message is in the queue
    received = []
    while (delivery := broker.get(route.queue)) is not None:
        received.append(Message.decode(delivery.body).args[0])
        delivery.ack()
    assert received == list(range(50))
    assert read_dead_letter(b"not json")["reason"] == "not a pyfi dead letter"
    broker.close()
