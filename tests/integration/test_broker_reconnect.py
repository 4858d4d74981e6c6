"""A worker's broker connections across an outage of the real RabbitMQ, staged by a relay."""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import urlsplit

import pytest

from pyfi.broker import Broker, SocketRoute
from pyfi.errors import BrokerUnavailable
from pyfi.message import Message
from pyfi.worker.publishing import BatchPublisher
from tests.conftest import requires_rabbitmq
from tests.relay import TcpRelay

pytestmark = [pytest.mark.rabbitmq, requires_rabbitmq]


@pytest.fixture
def relay(amqp_url: str) -> Any:
    parts = urlsplit(amqp_url)
    relay = TcpRelay(parts.hostname or "127.0.0.1", parts.port or 5672)
    yield relay
    relay.stop()


def _queued(amqp_url: str, route: SocketRoute) -> list[Any]:
    """The arguments of the calls waiting in the socket's queue (taken, acknowledged)."""
    broker = Broker(amqp_url)
    try:
        broker.declare(route)
        taken = []
        while (delivery := broker.get(route.queue)) is not None:
            taken.append(Message.decode(delivery.body).args[0])
            delivery.ack()
        return taken
    finally:
        broker.close()


def test_the_publisher_publishes_again_once_a_lost_broker_is_back(
    amqp_url: str, relay: TcpRelay
) -> None:
    # Given a worker's publisher that has published through the relay
    route = SocketRoute("downstream", "ex.downstream")
    publisher = BatchPublisher(relay.url_of(amqp_url))
    publisher.publish(Message.new("downstream", ["before"]), route)
    # When the broker goes away, a call's messages are handed over, and the broker comes back
    relay.set_up(False)
    told: list[BaseException | None] = []
    done = threading.Event()

    def confirmed(error: BaseException | None) -> None:
        told.append(error)
        done.set()

    publisher.publish_then([(Message.new("downstream", ["during"]), route)], confirmed)
    time.sleep(1.5)
    relay.set_up(True)
    # Then the messages are confirmed, not failed, and in the queue
    assert done.wait(30)
    publisher.close()
    assert told == [None]
    assert sorted(_queued(amqp_url, route)) == ["before", "during"]


def test_a_publisher_told_to_stop_retrying_fails_what_waits_for_the_broker(
    amqp_url: str, relay: TcpRelay
) -> None:
    # Given a publisher waiting for a lost broker with a call's messages
    route = SocketRoute("downstream", "ex.downstream")
    publisher = BatchPublisher(relay.url_of(amqp_url))
    publisher.publish(Message.new("downstream", ["before"]), route)
    relay.set_up(False)
    failed: list[BaseException | None] = []
    done = threading.Event()
    publisher.publish_then(
        [(Message.new("downstream", ["during"]), route)],
        lambda error: (failed.append(error), done.set()),
    )
    time.sleep(0.5)
    assert not done.is_set()  # waiting for the broker, not failed at once
    # When the worker stops meanwhile, then the caller learns its messages are not confirmed
    publisher.stop_retrying()
    assert done.wait(30)
    publisher.close()
    assert len(failed) == 1
    assert isinstance(failed[0], BrokerUnavailable)


def test_reconnecting_gives_up_after_the_time_allowed(amqp_url: str, relay: TcpRelay) -> None:
    # Given a connection through the relay, and the broker gone
    broker = Broker(relay.url_of(amqp_url))
    relay.set_up(False)
    # When it is reconnected with 1 s allowed, then it gives up, saying so
    with pytest.raises(BrokerUnavailable, match=r"cannot reach the message broker .* for 1s"):
        broker.reconnect(retry_for_s=1)
    # And once the broker is back, it reconnects
    relay.set_up(True)
    broker.reconnect(retry_for_s=10)
    broker.declare(SocketRoute("again", "ex.again"))
    broker.close()
