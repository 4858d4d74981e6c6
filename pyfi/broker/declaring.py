"""Declaring a socket's exchange and queues on a connection, once each.

A declaration waits for the broker's reply, so it is made once per connection
and remembered; a lost connection (or a queue found deleted) forgets them and
the next use declares again.
"""

from __future__ import annotations

from typing import Any

from kombu.entity import Exchange, Queue

from pyfi import naming
from pyfi.broker.connection import BrokerConnection
from pyfi.broker.topology import SocketRoute


class Declarations:
    """What has been declared on one connection, declaring the rest as it is needed."""

    def __init__(self, connection: BrokerConnection) -> None:
        self._connection = connection
        self._exchanges: dict[str, Exchange] = {}
        self._declared: set[str] = set()

    def declare(self, route: SocketRoute) -> None:
        """Declare a socket's exchange, queue, binding and dead-letter queue (once)."""
        if route.queue in self._declared:
            return
        channel = self._connection.kombu.default_channel
        exchange = self.exchange(route)
        exchange.declare(channel=channel)
        Queue(
            route.queue,
            exchange=exchange,
            routing_key=route.routing_key,
            durable=route.durable,
            queue_arguments=route.queue_arguments(),
            channel=channel,
        ).declare()
        self.plain_queue(route.dead_letter_queue).declare()
        self._declared.update((route.queue, route.dead_letter_queue))

    def exchange(self, route: SocketRoute) -> Exchange:
        """The socket's exchange (an object; declared by :meth:`declare`)."""
        exchange = self._exchanges.get(route.exchange)
        if exchange is None:
            exchange = Exchange(route.exchange, type=route.exchange_type, durable=route.durable)
            self._exchanges[route.exchange] = exchange
        return exchange

    def socket_queue(self, route: SocketRoute) -> Queue:
        """The socket's queue, bound to its exchange, for a consumer."""
        return Queue(
            route.queue,
            exchange=self.exchange(route),
            routing_key=route.routing_key,
            durable=route.durable,
            queue_arguments=route.queue_arguments(),
        )

    def ensure_plain(self, name: str, arguments: dict[str, Any] | None = None) -> None:
        """Declare a queue on the default exchange, once per connection."""
        if name not in self._declared:
            self.plain_queue(name, arguments).declare()
            self._declared.add(name)

    def plain_queue(self, name: str, arguments: dict[str, Any] | None = None) -> Queue:
        """A queue on the default exchange (dead letters, delays), bound to this connection."""
        return Queue(
            name,
            exchange=Exchange(naming.DEFAULT_EXCHANGE),
            routing_key=name,
            durable=True,
            queue_arguments=arguments or None,
            channel=self._connection.kombu.default_channel,
        )

    def forget(self) -> None:
        """Forget every declaration: the next use declares again (new connection, queue gone)."""
        self._declared.clear()
