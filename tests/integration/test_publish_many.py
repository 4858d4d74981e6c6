"""Publishing many calls with confirms awaited in windows, on both brokers."""

from __future__ import annotations

from pyfi.broker import Broker, SocketRoute
from pyfi.broker.broker import CONFIRM_WINDOW
from pyfi.message import Message


def _drain(broker: Broker, queue: str) -> list[Message]:
    received = []
    while (delivery := broker.get(queue)) is not None:
        received.append(Message.decode(delivery.body))
        delivery.ack()
    return received


def test_publish_many_delivers_every_call_in_order(broker_url: str) -> None:
    # Given more calls than one confirm window, to two sockets
    first, second = SocketRoute("s1", "ex.s1"), SocketRoute("s2", "ex.s2")
    count = CONFIRM_WINDOW * 2 + 7
    sent = [Message.new("s1" if n % 3 else "s2", [n]) for n in range(count)]
    broker = Broker(broker_url)
    # When they are published in one batch, after and before single publishes
    broker.publish(Message.new("s1", ["single-before"]), first)
    broker.publish_many((m, first if m.socket == "s1" else second) for m in sent)
    broker.publish(Message.new("s1", ["single-after"]), first)
    # Then every call is in its socket's queue, once, in order, with its id
    got_first, got_second = _drain(broker, first.queue), _drain(broker, second.queue)
    expected_first = [m for m in sent if m.socket == "s1"]
    assert [m.args[0] for m in got_first] == [
        "single-before",
        *(m.args[0] for m in expected_first),
        "single-after",
    ]
    assert [m.call_id for m in got_second] == [m.call_id for m in sent if m.socket == "s2"]
    broker.close()


def test_publish_many_of_nothing_returns(broker_url: str) -> None:
    # When an empty batch is published, then nothing waits for confirms that never come
    broker = Broker(broker_url)
    broker.publish_many([])
    broker.publish_many([])
    broker.publish(Message.new("s", [1]), SocketRoute("s", "ex.s"))
    assert [m.args for m in _drain(broker, SocketRoute("s", "ex.s").queue)] == [[1]]
    broker.close()


def test_an_unconfirmed_publish_is_delivered_in_order_with_confirmed_ones(broker_url: str) -> None:
    # Given a call published without waiting for its confirm, then settled
    route = SocketRoute("u", "ex.u")
    broker = Broker(broker_url)
    first = broker.publish_unconfirmed(Message.new("u", ["settled"]), route)
    first.settle()
    # When others are left unread while batches and single publishes follow
    unread = broker.publish_unconfirmed(Message.new("u", ["unread"]), route)
    broker.publish_many([(Message.new("u", [n]), route) for n in range(3)])
    left = broker.publish_unconfirmed(Message.new("u", ["left"]), route)
    broker.publish(Message.new("u", ["single"]), route)
    # Then every call is in the queue once, in publish order, and a confirmed
    # publish read the confirms left unread before waiting for its own
    assert [m.args[0] for m in _drain(broker, route.queue)] == [
        "settled",
        "unread",
        0,
        1,
        2,
        "left",
        "single",
    ]
    assert (first.outstanding, first.refused) == (set(), 0)
    assert (unread.outstanding, left.outstanding) == (set(), set())
    broker.close()
