"""Broker topology on RabbitMQ: user queue arguments apply, and nothing is silently dropped."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyfi.broker import Broker, SocketRoute
from pyfi.client.calls import CONFIRM_GRACE_S, Client
from pyfi.config import Settings
from pyfi.errors import BrokerUnavailable, CallTimeout
from pyfi.message import Message
from pyfi.worker.deadletter import read_dead_letter
from tests.conftest import requires_rabbitmq, requires_redis

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


def _refusing_route() -> SocketRoute:
    """A queue that holds nothing and makes RabbitMQ nack every publish."""
    return SocketRoute(
        "refusing",
        "refusing.exchange",
        arguments={"x-max-length": 0, "x-overflow": "reject-publish"},
    )


def test_a_refused_unconfirmed_publish_raises_when_settled(amqp_url: str) -> None:
    # Given a call published, without waiting, to a queue that refuses everything
    broker = Broker(amqp_url)
    pending = broker.publish_unconfirmed(Message.new("refusing", [1]), _refusing_route())
    # When its confirm is settled, then the refusal is raised
    with pytest.raises(BrokerUnavailable, match="refused 1 published call"):
        pending.settle(broker.connection.connection_errors)
    # And the broker goes on: a batch to the same queue is refused as a whole
    with pytest.raises(BrokerUnavailable, match="refused 2 published call"):
        broker.publish_many([(Message.new("refusing", [n]), _refusing_route()) for n in (2, 3)])
    broker.close()


def test_a_refusal_left_unread_is_not_taken_for_a_later_publishs_confirm(
    amqp_url: str,
) -> None:
    # Given a refused call published without waiting, its confirm (a nack) left unread
    broker = Broker(amqp_url)
    refused = broker.publish_unconfirmed(Message.new("refusing", [1]), _refusing_route())
    # When a call to a healthy socket is published and confirmed
    healthy = SocketRoute("healthy", "healthy.exchange")
    sent = Message.new("healthy", ["fine"])
    broker.publish(sent, healthy)
    # Then it went through on its own confirm, and the nack was counted for the refused call
    assert refused.refused == 1
    delivered = broker.get(healthy.queue)
    assert delivered is not None
    assert Message.decode(delivered.body).call_id == sent.call_id
    broker.close()


def _client_settings(amqp_url: str, redis_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'pyfi.sqlite'}",
        broker_url=amqp_url,
        backend_url=redis_url,
        data_dir=tmp_path,
        ini_path=tmp_path / "pyfi.ini",
    )


@pytest.fixture
def refusing_client(
    amqp_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Client]:
    """A client whose every socket's queue refuses every call."""
    with Client(_client_settings(amqp_url, redis_url, tmp_path)) as client:
        monkeypatch.setattr(client, "route", lambda _socket: _refusing_route())
        yield client


@requires_redis
@pytest.mark.redis
def test_a_confirmed_call_the_broker_refuses_fails_at_once_not_at_its_timeout(
    refusing_client: Client,
) -> None:
    # When a client whose queue refuses calls with confirm, with a long timeout
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match="refused 1 published call"):
        refusing_client.call("refusing", [1], timeout_s=60, confirm=True)
    # Then the refusal is raised once the first short wait for a result is over
    assert time.monotonic() - started < CONFIRM_GRACE_S + 5
    # And with a timeout shorter than that wait, the refusal is still what is reported
    with pytest.raises(BrokerUnavailable, match="refused"):
        refusing_client.call("refusing", [2], timeout_s=0.5, confirm=True)


@requires_redis
@pytest.mark.redis
def test_an_unconfirmed_call_a_queue_refuses_ends_in_its_timeout(
    refusing_client: Client,
) -> None:
    # When a client whose queue refuses calls without confirm (the default),
    # then the call times out: RabbitMQ drops a refused message unannounced
    # outside confirm mode
    started = time.monotonic()
    with pytest.raises(CallTimeout):
        refusing_client.call("refusing", [1], timeout_s=CONFIRM_GRACE_S + 0.5)
    assert time.monotonic() - started >= CONFIRM_GRACE_S + 0.5
    # And the client goes on: a confirmed publish after it is not confused by it
    with pytest.raises(BrokerUnavailable, match="refused 1 published call"):
        refusing_client.call("refusing", [2], timeout_s=5, confirm=True)


@requires_redis
@pytest.mark.redis
def test_a_call_whose_queue_is_gone_is_returned_and_raises_before_its_timeout(
    amqp_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a client that has declared a socket's queue, which is then deleted
    route = SocketRoute("vanishing", "vanishing.exchange", "direct")
    with Client(_client_settings(amqp_url, redis_url, tmp_path)) as client:
        monkeypatch.setattr(client, "route", lambda _socket: route)
        client.broker.declare(route)
        client.broker.connection.default_channel.queue_delete(route.queue)
        # When it calls and waits with a long timeout
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable, match=r"returned call .*'vanishing'"):
            client.call("vanishing", [1], timeout_s=60)
        # Then the broker's return is reported after the first short wait
        assert time.monotonic() - started < CONFIRM_GRACE_S + 5
        # And the next call declares the queue again: it is taken (nobody
        # consumes, so it waits in the queue until its timeout)
        with pytest.raises(CallTimeout):
            client.call("vanishing", [2], timeout_s=CONFIRM_GRACE_S + 0.2)
        waiting = client.broker.get(route.queue)
        assert waiting is not None
        assert Message.decode(waiting.body).args == [2]


def _drop_connections_of(amqp_url: str) -> int:
    """Have RabbitMQ close every client connection to ``amqp_url``'s virtual host."""
    vhost = amqp_url.rsplit("/", 1)[1]
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "--no-table-headers", "vhost", "pid"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    pids = [line.split("\t")[1] for line in listed.splitlines() if line.split("\t")[0] == vhost]
    for pid in pids:
        subprocess.run(
            ["rabbitmqctl", "-q", "close_connection", pid, "closed by a test"],
            check=True,
            capture_output=True,
        )
    return len(pids)


def _cut_the_socket(client: Client) -> None:
    """Shut the client's TCP connection down under it: no goodbye from the broker."""
    client.broker.connection.connection.transport.sock.shutdown(socket.SHUT_RDWR)


@requires_redis
@pytest.mark.redis
@pytest.mark.parametrize("how", ["closed by the broker", "cut"])
def test_calls_after_the_connection_was_lost_go_out_again(
    how: str, amqp_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a client that has called a socket nobody consumes
    route = SocketRoute("recovering", "recovering.exchange", "direct")
    with Client(_client_settings(amqp_url, redis_url, tmp_path)) as client:
        monkeypatch.setattr(client, "route", lambda _socket: route)
        with pytest.raises(CallTimeout):
            client.call("recovering", [1], timeout_s=0.3)
        # When its connection is lost: closed by the broker, or cut without a word
        if how == "cut":
            _cut_the_socket(client)
        else:
            assert _drop_connections_of(amqp_url) >= 1
        # Then the next call reports the lost broker (at the latest after the grace)
        with pytest.raises(BrokerUnavailable):
            client.call("recovering", [2], timeout_s=CONFIRM_GRACE_S + 1)
        # And the call after it goes out on a new connection and channel (kombu
        # replaces a cut connection without closing the old one's channels)
        with pytest.raises(CallTimeout):
            client.call("recovering", [3], timeout_s=0.3)
        # And so does a call sent without waiting
        client.send("recovering", [4])
    reader = Broker(amqp_url)
    reader.declare(route)
    waiting = []
    while (delivery := reader.get(route.queue)) is not None:
        waiting.append(Message.decode(delivery.body).args)
    reader.close()
    assert [1] in waiting
    assert [3] in waiting
    assert [4] in waiting
