"""One broker connection: declare a socket's topology, publish, consume.

A :class:`Broker` puts together the parts of one connection, each in a module
of its own:

* :mod:`pyfi.broker.connection`: the connection itself, made from the URI
  (RabbitMQ, or the embedded folder), reconnected, kept alive by heartbeats;
* :mod:`pyfi.broker.declaring`: the exchanges and queues declared on it;
* :mod:`pyfi.broker.producing`: publishing, with the broker's confirms;
* :mod:`pyfi.broker.consuming`: consumers and the wait for deliveries.

Callers see the same methods whichever broker the URI names. A
:class:`Broker` is not thread-safe (nor are kombu channels): each thread that
publishes uses its own, made with :meth:`Broker.clone`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from kombu.message import Message as KombuMessage
from kombu.messaging import Consumer, Producer

from pyfi.broker.confirms import PendingConfirms
from pyfi.broker.connection import (
    CONNECT_RETRIES,
    RECONNECT_MAX_INTERVAL_S,
    BrokerConnection,
    connection_for,
)
from pyfi.broker.consuming import MIN_FRAME_WAIT_S, Consuming
from pyfi.broker.declaring import Declarations
from pyfi.broker.producing import CONFIRM_WINDOW, MAX_RETURNED, Producing
from pyfi.broker.topology import SocketRoute
from pyfi.broker.wakeup import Wakeup
from pyfi.message import Message

__all__ = [
    "CONFIRM_WINDOW",
    "CONNECT_RETRIES",
    "MAX_RETURNED",
    "MIN_FRAME_WAIT_S",
    "RECONNECT_MAX_INTERVAL_S",
    "Broker",
    "connection_for",
]


class Broker:
    """A connection to the message broker and what has been declared on it."""

    def __init__(self, url: str, *, heartbeat_s: int = 0) -> None:
        self.url = url
        self._link = BrokerConnection(url, heartbeat_s=heartbeat_s)
        self.connection = self._link.kombu
        self._declarations = Declarations(self._link)
        self._producing = Producing(self._link, self._declarations, self._forget_connection)
        self._consuming = Consuming(self._link, self._declarations)
        self.connect()

    # -- the connection --------------------------------------------------
    @property
    def is_filesystem(self) -> bool:
        """True for the embedded broker folder."""
        return self._link.is_filesystem

    @property
    def root(self) -> Path | None:
        """The broker folder of the embedded broker."""
        return self._link.root

    @property
    def confirms(self) -> bool:
        """True when the broker confirms publishes (RabbitMQ); the embedded one writes at once."""
        return self._link.confirms

    @property
    def acks_multiple(self) -> bool:
        """Whether one ack may settle every earlier delivery too (AMQP yes, virtual no)."""
        return self._link.acks_multiple

    @property
    def lost_errors(self) -> tuple[type[BaseException], ...]:
        """The errors that mean the connection itself is gone (not a refused operation)."""
        return self._link.lost_errors

    def connect(self) -> None:
        """Connect (or reconnect), translating failure into :class:`BrokerUnavailable`."""
        self._link.connect()

    def reconnect(
        self,
        *,
        retry_for_s: float | None = None,
        on_retry: Callable[[], None] | None = None,
    ) -> None:
        """Drop the lost connection and connect again, with backoff, for as long as allowed.

        What was declared and consumed on the old connection is forgotten:
        the caller consumes again. See :meth:`BrokerConnection.reconnect`.

        Raises
        ------
        BrokerUnavailable
            Still unreachable after ``retry_for_s`` seconds (None: try for ever).
        """
        self._forget_connection()
        self._link.reconnect(retry_for_s=retry_for_s, on_retry=on_retry)

    def heartbeat_check(self) -> None:
        """Send a heartbeat if one is due; raise (one of :attr:`lost_errors`) if missed."""
        self._link.heartbeat_check()

    def clone(self) -> Broker:
        """Another connection to the same broker, for another thread."""
        return Broker(self.url)

    def _forget_connection(self) -> None:
        """Drop a lost connection and what lived on it; the next use connects afresh.

        kombu replaces a lost connection when it is next asked for, without
        closing the old one's socket or channels (which still read as open):
        collected here, so that nothing publishes on them again and the
        socket is not left to the garbage collector.
        """
        self._producing.forget()
        self._declarations.forget()
        with contextlib.suppress(Exception):  # it is gone already; only references remain
            self.connection.collect()

    def close(self) -> None:
        """Close the connection; unacked messages go back to their queues."""
        self._producing.settle_unconfirmed(quiet=True)
        self._link.release()

    # -- topology --------------------------------------------------------
    def declare(self, route: SocketRoute) -> None:
        """Declare a socket's exchange, queue, binding and dead-letter queue (once)."""
        self._declarations.declare(route)

    # -- publishing ------------------------------------------------------
    @property
    def producer(self) -> Producer:
        """The kombu producer of this connection."""
        return self._producing.producer

    def publish(self, message: Message, route: SocketRoute, *, delay_ms: int = 0) -> None:
        """Publish a call to a socket; returns once the broker has it (see :class:`Producing`)."""
        self._producing.publish(message, route, delay_ms=delay_ms)

    def publish_many(self, items: Iterable[tuple[Message, SocketRoute]]) -> None:
        """Publish many calls; returns once the broker has confirmed every one."""
        self._producing.publish_many(items)

    def publish_unconfirmed(self, message: Message, route: SocketRoute) -> PendingConfirms:
        """Publish a call without waiting for its confirm; settle it, or leave it, later."""
        return self._producing.publish_unconfirmed(message, route)

    def publish_awaited(self, message: Message, route: SocketRoute) -> None:
        """Publish a call whose caller waits for its result: no confirm, returned if unroutable."""
        self._producing.publish_awaited(message, route)

    def returned(self, call_id: str) -> bool:
        """Whether the broker has returned ``call_id`` as unroutable, once what has come is read."""
        return self._producing.returned(call_id)

    def collect_confirms(self) -> None:
        """Read the confirms of unconfirmed publishes that have come, without waiting."""
        self._producing.collect_confirms()

    def publish_to_queue(self, queue: str, body: bytes, headers: dict[str, Any]) -> None:
        """Publish raw bytes straight into a named queue (dead letters)."""
        self._producing.publish_to_queue(queue, body, headers)

    # -- consuming -------------------------------------------------------
    def consumer(
        self,
        routes: Iterable[SocketRoute],
        on_message: Callable[[KombuMessage], None],
        *,
        prefetch: int,
    ) -> Consumer:
        """A started consumer of the sockets' queues; messages arrive undecoded."""
        return self._consuming.consumer(routes, on_message, prefetch=prefetch)

    def drain(self, timeout: float, wakeup: Wakeup | None = None) -> None:
        """Deliver whatever arrives within ``timeout`` seconds to the consumers."""
        self._consuming.drain(timeout, wakeup)

    @property
    def wakes_on_socket(self) -> bool:
        """Whether :meth:`drain` can be ended early by a :class:`Wakeup`."""
        return self._consuming.wakes_on_socket

    def get(self, queue: str) -> KombuMessage | None:
        """Take one message from a queue without a consumer (unacked until settled)."""
        return self._consuming.get(queue)
