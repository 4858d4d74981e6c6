"""Consuming on a broker connection: consumers, waiting for deliveries, taking one.

Deliveries arrive undecoded (the worker's admission reads them). Waiting can
be ended early by another thread (:mod:`pyfi.broker.wakeup`) where the
connection has a socket to wait on.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Callable, Iterable

from kombu.message import Message as KombuMessage
from kombu.messaging import Consumer

from pyfi.broker.amqp_transport import BufferedTCPTransport
from pyfi.broker.connection import BrokerConnection
from pyfi.broker.declaring import Declarations
from pyfi.broker.topology import SocketRoute
from pyfi.broker.wakeup import Wakeup
from pyfi.message import CONTENT_TYPE

# How long drain() waits for the rest of a frame once its first bytes are in.
MIN_FRAME_WAIT_S = 0.25


class Consuming:
    """The consuming side of one connection."""

    def __init__(self, connection: BrokerConnection, declarations: Declarations) -> None:
        self._connection = connection
        self._declarations = declarations

    def consumer(
        self,
        routes: Iterable[SocketRoute],
        on_message: Callable[[KombuMessage], None],
        *,
        prefetch: int,
    ) -> Consumer:
        """A started consumer of the sockets' queues; messages arrive undecoded."""
        queues = []
        for route in routes:
            self._declarations.declare(route)
            queues.append(self._declarations.socket_queue(route))
        consumer = Consumer(
            self._connection.kombu.default_channel,
            queues=queues,
            on_message=on_message,
            prefetch_count=prefetch,
            no_ack=False,
        )
        consumer.consume()
        return consumer

    def drain(self, timeout: float, wakeup: Wakeup | None = None) -> None:
        """Deliver whatever arrives within ``timeout`` seconds to the consumers.

        With a ``wakeup``, the wait also ends as soon as another thread sets
        it (see :mod:`pyfi.broker.wakeup`); ``timeout`` may then be 0 to
        take only what has come. Transports without a socket to wait on
        (the embedded broker) wait for ``timeout`` as before.
        """
        transport = self._tcp_transport() if wakeup is not None else None
        if transport is not None and wakeup is not None and not transport.frame_ready():
            sock = transport.sock.fileno()
            ready, _, _ = select.select([sock, wakeup.fileno()], [], [], timeout)
            if wakeup.fileno() in ready:
                wakeup.clear()
            if sock not in ready:
                return
            # Bytes have come: at most the rest of a frame is still on its way.
            timeout = max(timeout, MIN_FRAME_WAIT_S)
        try:
            self._connection.kombu.drain_events(timeout=timeout)
        except TimeoutError:
            pass
        except socket.timeout:  # noqa: UP041 - py-amqp may raise the socket alias
            pass

    @property
    def wakes_on_socket(self) -> bool:
        """Whether :meth:`drain` can be ended early by a :class:`Wakeup`."""
        return self._tcp_transport() is not None

    def _tcp_transport(self) -> BufferedTCPTransport | None:
        """The plain TCP transport of an AMQP connection, whose socket ``select`` can wait on.

        None for the embedded broker, and for TLS, whose buffer select cannot see.
        """
        transport = getattr(self._connection.kombu.connection, "transport", None)
        if isinstance(transport, BufferedTCPTransport) and transport.sock is not None:
            return transport
        return None

    def get(self, queue: str) -> KombuMessage | None:
        """Take one message from a queue without a consumer (unacked until settled).

        A queue this connection has not declared is declared as a plain one
        (dead-letter queues are plain), so that an empty one reads as empty.
        """
        self._declarations.ensure_plain(queue)
        message: KombuMessage | None = self._declarations.plain_queue(queue).get(
            no_ack=False, accept=[CONTENT_TYPE]
        )
        return message
