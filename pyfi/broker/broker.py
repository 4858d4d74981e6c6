"""One broker connection: declare a socket's topology, publish, consume.

RabbitMQ is reached through kombu and py-amqp with publisher confirms on, so
``publish`` returns only once the broker has taken responsibility for the
message. The embedded default uses :mod:`pyfi.broker.filesystem`. The URI
alone chooses; callers see the same methods either way.

A :class:`Broker` is not thread-safe (nor are kombu channels): each thread
that publishes uses its own, made with :meth:`Broker.clone`.
"""

from __future__ import annotations

import contextlib
import select
import socket
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from itertools import islice
from pathlib import Path
from typing import Any

from kombu.connection import Connection
from kombu.entity import Exchange, Queue
from kombu.exceptions import OperationalError as KombuOperationalError
from kombu.message import Message as KombuMessage
from kombu.messaging import Consumer, Producer

from pyfi import naming
from pyfi.broker import amqp_transport, filesystem
from pyfi.broker.amqp_transport import BufferedTCPTransport
from pyfi.broker.confirms import BrokerConnectionLost, PendingConfirms, drain_ready, lost_broker
from pyfi.broker.topology import SocketRoute
from pyfi.broker.wakeup import Wakeup
from pyfi.config import filesystem_broker_dir, mask_url
from pyfi.errors import BrokerUnavailable
from pyfi.message import CONTENT_TYPE, Message

CONNECT_RETRIES = 3
# The longest wait between two attempts to reconnect (see Broker.reconnect).
RECONNECT_MAX_INTERVAL_S = 2.0
# Publishes in flight before publish_many waits for their confirms.
CONFIRM_WINDOW = 500
# Ids of returned calls kept for their callers to ask about (see returned()).
MAX_RETURNED = 1024
# How long drain() waits for the rest of a frame once its first bytes are in.
MIN_FRAME_WAIT_S = 0.25


def connection_for(url: str, *, heartbeat_s: int = 0) -> Connection:
    """A kombu connection for a pyfi broker URI (not yet connected).

    ``heartbeat_s`` asks RabbitMQ for AMQP heartbeats at that interval (0:
    none). Only a connection whose owner calls :meth:`Broker.heartbeat_check`
    regularly may ask for them: the broker closes a connection that sends
    nothing for two intervals, and py-amqp sends heartbeats only when told.
    """
    if url.startswith("filesystem://"):
        root = filesystem_broker_dir(url)
        root.mkdir(parents=True, exist_ok=True)
        return Connection(
            transport=filesystem.Transport,
            transport_options={
                "pyfi_root": str(root),
                "data_folder_in": str(root / "queues"),
                "data_folder_out": str(root / "queues"),
                "control_folder": str(root / "control"),
            },
        )
    if url.startswith("memory://"):
        return Connection("memory://")
    return Connection(
        url,
        transport=amqp_transport.Transport,
        connect_timeout=5,
        heartbeat=heartbeat_s,
        transport_options={"confirm_publish": True},
    )


class Broker:
    """A connection to the message broker and what has been declared on it."""

    def __init__(self, url: str, *, heartbeat_s: int = 0) -> None:
        self.url = url
        self.connection = connection_for(url, heartbeat_s=heartbeat_s)
        self._exchanges: dict[str, Exchange] = {}
        self._declared: set[str] = set()
        self._producer: Producer | None = None
        self._published = 0
        self._tagged_channel: Any = None
        # Confirms of publish_unconfirmed calls still to be read (see there).
        self._unconfirmed: list[PendingConfirms] = []
        # The channel of publish_awaited, without confirm mode, and the ids
        # of the calls the broker returned on it as unroutable (oldest first).
        self._awaited_channel: Any = None
        self._returned: dict[str, None] = {}
        self.connect()

    @property
    def is_filesystem(self) -> bool:
        """True for the embedded broker folder."""
        return self.url.startswith("filesystem://")

    @property
    def root(self) -> Path | None:
        """The broker folder of the embedded broker."""
        return filesystem_broker_dir(self.url) if self.is_filesystem else None

    def connect(self) -> None:
        """Connect (or reconnect), translating failure into :class:`BrokerUnavailable`."""
        try:
            self.connection.ensure_connection(max_retries=CONNECT_RETRIES, interval_start=0.2)
        except (*self.connection.connection_errors, OSError, KombuOperationalError) as exc:
            # ensure_connection gives up with kombu's OperationalError, which
            # is neither of the transport's connection errors nor an OSError.
            raise BrokerUnavailable(
                f"cannot reach the message broker {mask_url(self.url)}: {exc}; start it, or "
                "point --broker/PYFI_BROKER at a reachable one"
            ) from exc

    @property
    def lost_errors(self) -> tuple[type[BaseException], ...]:
        """The errors that mean the connection itself is gone (not a refused operation)."""
        return (
            *self.connection.connection_errors,
            *self.connection.recoverable_connection_errors,
            BrokerConnectionLost,
            KombuOperationalError,
            OSError,
        )

    def reconnect(
        self,
        *,
        retry_for_s: float | None = None,
        on_retry: Callable[[], None] | None = None,
    ) -> None:
        """Drop the lost connection and connect again, with backoff, for as long as allowed.

        kombu's reconnect pattern (``ensure_connection``): the wait between
        attempts grows from 0.2 s by 0.5 s up to :data:`RECONNECT_MAX_INTERVAL_S`,
        so a broker back after an outage is found within seconds. What was
        declared and consumed on the old connection is forgotten: the caller
        consumes again. ``on_retry`` is called before every attempt; it may
        raise to stop trying (a stop requested meanwhile).

        Raises
        ------
        BrokerUnavailable
            Still unreachable after ``retry_for_s`` seconds (None: try for ever).
        """
        self._forget_connection()
        try:
            self.connection.ensure_connection(
                max_retries=None,
                interval_start=0.2,
                interval_step=0.5,
                interval_max=RECONNECT_MAX_INTERVAL_S,
                callback=on_retry,
                timeout=retry_for_s,
            )
        except (*self.connection.connection_errors, OSError, KombuOperationalError) as exc:
            waited = f" for {retry_for_s:g}s" if retry_for_s is not None else ""
            raise BrokerUnavailable(
                f"cannot reach the message broker {mask_url(self.url)}{waited}: {exc}"
            ) from exc

    def heartbeat_check(self) -> None:
        """Send a heartbeat if one is due; raise if the broker's have stopped coming.

        Call it about once a second on a connection made with ``heartbeat_s``.
        A half-open connection (the broker gone without a word) is then
        noticed within two heartbeat intervals.

        Raises
        ------
        Exception
            One of :attr:`lost_errors`: heartbeats were missed.
        """
        self.connection.heartbeat_check()

    def clone(self) -> Broker:
        """Another connection to the same broker, for another thread."""
        return Broker(self.url)

    # -- topology --------------------------------------------------------
    def declare(self, route: SocketRoute) -> None:
        """Declare a socket's exchange, queue, binding and dead-letter queue (once)."""
        if route.queue in self._declared:
            return
        channel = self.connection.default_channel
        exchange = self._exchange(route)
        exchange.declare(channel=channel)
        Queue(
            route.queue,
            exchange=exchange,
            routing_key=route.routing_key,
            durable=route.durable,
            queue_arguments=route.queue_arguments(),
            channel=channel,
        ).declare()
        self._plain_queue(route.dead_letter_queue).declare()
        self._declared.update((route.queue, route.dead_letter_queue))

    def _exchange(self, route: SocketRoute) -> Exchange:
        exchange = self._exchanges.get(route.exchange)
        if exchange is None:
            exchange = Exchange(route.exchange, type=route.exchange_type, durable=route.durable)
            self._exchanges[route.exchange] = exchange
        return exchange

    def _ensure_plain(self, name: str, arguments: dict[str, Any] | None = None) -> None:
        """Declare a queue on the default exchange, once per connection."""
        if name not in self._declared:
            self._plain_queue(name, arguments).declare()
            self._declared.add(name)

    def _plain_queue(self, name: str, arguments: dict[str, Any] | None = None) -> Queue:
        return Queue(
            name,
            exchange=Exchange(naming.DEFAULT_EXCHANGE),
            routing_key=name,
            durable=True,
            queue_arguments=arguments or None,
            channel=self.connection.default_channel,
        )

    # -- publishing ------------------------------------------------------
    @property
    def producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(self.connection.default_channel)
        return self._producer

    def publish(self, message: Message, route: SocketRoute, *, delay_ms: int = 0) -> None:
        """Publish a call to a socket; returns once the broker has it.

        With ``delay_ms`` the broker holds the message that long first: a
        TTL queue that dead-letters into the socket's queue on RabbitMQ, a
        due time in the file name on the embedded broker.
        """
        self.declare(route)
        body = message.encode()
        headers: dict[str, Any] = {"pyfi-socket": message.socket}
        if delay_ms <= 0:
            self._send(body, self._exchange(route), route.routing_key, headers, message.call_id)
        elif self.is_filesystem:
            headers[filesystem.DUE_HEADER] = int(time.time() * 1000) + delay_ms
            self._send(body, naming.DEFAULT_EXCHANGE, route.queue, headers, message.call_id)
        else:
            holding = naming.delay_queue(route.socket, delay_ms)
            self._ensure_plain(
                holding,
                {
                    "x-message-ttl": delay_ms,
                    "x-dead-letter-exchange": naming.DEFAULT_EXCHANGE,
                    "x-dead-letter-routing-key": route.queue,
                },
            )
            self._send(body, naming.DEFAULT_EXCHANGE, holding, headers, message.call_id)

    def publish_many(self, items: Iterable[tuple[Message, SocketRoute]]) -> None:
        """Publish many calls; returns once the broker has confirmed every one.

        On RabbitMQ the confirms are awaited per window of
        :data:`CONFIRM_WINDOW` messages instead of one round trip per message,
        which is what makes a client sending thousands of calls fast without
        giving up the guarantee of :meth:`publish`. A nack or a lost
        connection raises, and the caller cannot know which messages of the
        window got through: publish them again (their ids make repeats
        recognisable).
        """
        if not self.confirms:
            for message, route in items:
                self.publish(message, route)
            return
        channel = self._confirm_channel()
        # Confirms may be read while publishing (py-amqp drains pending frames
        # before each publish), so they are counted, not waited for one by one.
        pending = PendingConfirms(channel, self.url)
        try:
            source = iter(items)
            while window := list(islice(source, CONFIRM_WINDOW)):
                self._send_window(channel, window, pending)
                pending.wait()
        except (*self.connection.connection_errors, TimeoutError) as exc:
            if isinstance(exc, TimeoutError):
                self._unconfirmed.append(pending)  # late confirms are still read as its own
            else:
                pending.abandon()
            raise lost_broker(self.url, exc) from exc
        pending.settle(self.connection.connection_errors)

    def publish_unconfirmed(self, message: Message, route: SocketRoute) -> PendingConfirms:
        """Publish a call without waiting for the broker's confirm; settle it, or leave it, later.

        For a caller that waits for the call's result anyway: the result
        proves the broker delivered the call, so the confirm (for a
        persistent message, the broker's write to disk) need not stand
        between the publish and the wait. Settle the returned confirms
        (:meth:`PendingConfirms.settle`, which raises if the broker refused
        or lost the call), or leave them to the broker. The embedded broker
        has written the message when this returns.

        Confirms left unread are read by :meth:`collect_confirms`, before the
        next :meth:`publish` (whose own wait must not take an earlier call's
        confirm for its message's), and at :meth:`close`.
        """
        if not self.confirms:
            self.publish(message, route)
            return PendingConfirms(None, self.url)
        channel = self._confirm_channel()
        pending = PendingConfirms(channel, self.url)
        try:
            self._send_window(channel, [(message, route)], pending)
        except self.connection.connection_errors as exc:
            pending.abandon()
            raise lost_broker(self.url, exc) from exc
        self._unconfirmed.append(pending)
        return pending

    def publish_awaited(self, message: Message, route: SocketRoute) -> None:
        """Publish a call whose caller waits for its result: no confirm, returned if unroutable.

        RabbitMQ confirms a persistent message once it is on disk, and with
        calls coming one at a time that is a synced write per call, which
        doubled the broker's CPU per call. A caller that waits for the
        result needs none of it: the result proves the delivery, and a lost
        connection is seen when the wait reads the connection
        (:meth:`returned`). The message is published *mandatory*, so a call
        no queue would take comes back and :meth:`returned` says so. A call
        a queue refuses (a policy that rejects publishes when full) is
        dropped without a word: its caller's wait times out. Where that must
        be reported at once, use :meth:`publish_unconfirmed`.
        """
        if not self.confirms:
            self.publish(message, route)
            return
        try:
            self._send_window(self._awaited(), [(message, route)], None)
        except (*self.connection.connection_errors, OSError) as exc:
            self._forget_connection()
            raise lost_broker(self.url, exc) from exc

    def returned(self, call_id: str) -> bool:
        """Whether the broker has returned ``call_id`` as unroutable, once what has come is read.

        A returned call's queue is gone (deleted since it was declared): the
        next publish declares every queue again.

        Raises
        ------
        BrokerUnavailable
            The connection was lost, or the broker closed the channel (the
            socket's exchange is gone too).
        """
        channel = self._awaited_channel
        if channel is not None and channel.connection is not None:
            try:
                drain_ready(channel.connection)
            except self.connection.channel_errors as exc:  # py-amqp has reopened the channel
                self._declared.clear()
                raise BrokerUnavailable(
                    f"the message broker {mask_url(self.url)} closed the channel of call "
                    f"{call_id}: {exc}; call again to declare its socket's queue and exchange"
                ) from exc
            except (*self.connection.connection_errors, OSError) as exc:
                self._forget_connection()
                raise lost_broker(self.url, exc) from exc
        if call_id not in self._returned:
            return False
        del self._returned[call_id]
        self._declared.clear()
        return True

    def _awaited(self) -> Any:
        """The channel of :meth:`publish_awaited` on the current connection, opened as needed.

        kombu replaces a lost connection without closing the channels of the
        old one (they still read as open), so the channel is checked against
        the connection kombu holds now, which reconnects if need be.
        """
        channel = self._awaited_channel
        current = self.connection.connection
        if channel is None or not channel.is_open or channel.connection is not current:
            channel = self.connection.channel()
            channel.events["basic_return"].add(self._on_returned)
            self._awaited_channel = channel
        return channel

    def _forget_connection(self) -> None:
        """Drop a lost connection and what lived on it; the next use connects afresh.

        kombu replaces a lost connection when it is next asked for, without
        closing the old one's socket or channels (which still read as open):
        collected here, so that nothing publishes on them again and the
        socket is not left to the garbage collector.
        """
        for pending in self._unconfirmed:
            pending.abandon()
        self._unconfirmed = []
        self._awaited_channel = None
        self._producer = None
        self._declared.clear()
        with contextlib.suppress(Exception):  # it is gone already; only references remain
            self.connection.collect()

    def _on_returned(self, _error: Any, _exchange: str, _routing_key: str, message: Any) -> None:
        call_id = message.properties.get("message_id")
        if call_id:
            self._returned[call_id] = None
            if len(self._returned) > MAX_RETURNED:  # returns nobody asked about in time
                del self._returned[next(iter(self._returned))]

    def collect_confirms(self) -> None:
        """Read the confirms of unconfirmed publishes that have come, without waiting.

        Never raises: a lost connection is reported by the next publish.
        """
        live = [pending for pending in self._unconfirmed if not pending.settled]
        try:
            if live:
                live[0].collect()  # every one listens on the channel: one read serves all
        except (*self.connection.connection_errors, *self.connection.channel_errors, OSError):
            live = []  # the channel is gone: no confirm can come on it
        for pending in self._unconfirmed:
            if pending not in live or pending.settled:
                pending.abandon()
        self._unconfirmed = [pending for pending in live if not pending.settled]

    def _settle_unconfirmed(self, *, quiet: bool = False) -> None:
        """Wait for every confirm publish_unconfirmed left unread; refusals were their callers'.

        Raises
        ------
        BrokerUnavailable
            Unless ``quiet``: a confirm did not come in time, so a publish
            now could take it for its own message's.
        """
        while self._unconfirmed:
            pending = self._unconfirmed[0]
            try:
                pending.wait()
            except self.connection.connection_errors:
                pass  # the connection is gone, and its confirms with it
            except TimeoutError as exc:
                if not quiet:
                    raise BrokerUnavailable(
                        f"the message broker {mask_url(self.url)} has not confirmed "
                        f"earlier calls: {exc}"
                    ) from exc
            self._unconfirmed.pop(0).abandon()

    @property
    def confirms(self) -> bool:
        """True when the broker confirms publishes (RabbitMQ); the embedded one writes at once."""
        return not (self.is_filesystem or self.url.startswith("memory://"))

    def _confirm_channel(self) -> Any:
        """The producer's channel, in confirm mode, with its delivery tags counted."""
        channel = self.producer.channel
        self._count_tags_on(channel)
        if not channel._confirm_selected:
            channel._confirm_selected = True
            channel.confirm_select()
        return channel

    def _send_window(
        self,
        channel: Any,
        window: list[tuple[Message, SocketRoute]],
        pending: PendingConfirms | None,
    ) -> None:
        """Send ``window``'s messages in one write, expecting a confirm for each from ``pending``.

        Without ``pending`` (a channel not in confirm mode) they are sent
        mandatory instead: the broker returns what it cannot route.
        """
        transport = channel.connection.transport
        corked = transport.corked if isinstance(transport, BufferedTCPTransport) else nullcontext
        for _, route in window:  # declaring waits for replies: not while corked
            self.declare(route)
        with corked():
            for message, route in window:
                prepared = channel.prepare_message(
                    message.encode(),
                    content_type=CONTENT_TYPE,
                    content_encoding="utf-8",
                    headers={"pyfi-socket": message.socket},
                    properties={"delivery_mode": 2, "message_id": message.call_id},
                )
                channel._basic_publish(
                    prepared,
                    exchange=self._exchange(route).name,
                    routing_key=route.routing_key,
                    mandatory=pending is None,
                )
                if pending is not None:
                    self._published += 1
                    pending.add(self._published)

    def _count_publish(self) -> None:
        """Keep count of the confirm-mode delivery tag of the producer's channel.

        Tags start at 1 on each channel; kombu may replace the channel when it
        reconnects, and then counting starts again.
        """
        self._count_tags_on(self.producer.channel)
        self._published += 1

    def _count_tags_on(self, channel: Any) -> None:
        """Count delivery tags from 1 again when kombu has replaced the producer's channel."""
        if channel is not self._tagged_channel:
            self._tagged_channel, self._published = channel, 0

    def publish_to_queue(self, queue: str, body: bytes, headers: dict[str, Any]) -> None:
        """Publish raw bytes straight into a named queue (dead letters)."""
        self._ensure_plain(queue)
        self._send(body, naming.DEFAULT_EXCHANGE, queue, headers, None)

    def _send(
        self,
        body: bytes,
        exchange: Exchange | str,
        routing_key: str,
        headers: dict[str, Any],
        message_id: str | None,
    ) -> None:
        self._settle_unconfirmed()
        try:
            self.producer.publish(
                body,
                exchange=exchange,
                routing_key=routing_key,
                content_type=CONTENT_TYPE,
                content_encoding="utf-8",
                delivery_mode=2,
                headers=headers,
                message_id=message_id,
                retry=True,
                retry_policy={"max_retries": CONNECT_RETRIES, "interval_start": 0.2},
            )
            self._count_publish()
        except self.connection.connection_errors as exc:
            raise lost_broker(self.url, exc) from exc

    # -- consuming -------------------------------------------------------
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
            self.declare(route)
            queues.append(
                Queue(
                    route.queue,
                    exchange=self._exchange(route),
                    routing_key=route.routing_key,
                    durable=route.durable,
                    queue_arguments=route.queue_arguments(),
                )
            )
        consumer = Consumer(
            self.connection.default_channel,
            queues=queues,
            on_message=on_message,
            prefetch_count=prefetch,
            no_ack=False,
        )
        consumer.consume()
        return consumer

    @property
    def acks_multiple(self) -> bool:
        """Whether one ack may settle every earlier delivery too (AMQP yes, virtual no)."""
        return bool(self.connection.transport.driver_type == "amqp")

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
            self.connection.drain_events(timeout=timeout)
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
        transport = getattr(self.connection.connection, "transport", None)
        if isinstance(transport, BufferedTCPTransport) and transport.sock is not None:
            return transport
        return None

    def get(self, queue: str) -> KombuMessage | None:
        """Take one message from a queue without a consumer (unacked until settled).

        A queue this connection has not declared is declared as a plain one
        (dead-letter queues are plain), so that an empty one reads as empty.
        """
        self._ensure_plain(queue)
        message: KombuMessage | None = self._plain_queue(queue).get(
            no_ack=False, accept=[CONTENT_TYPE]
        )
        return message

    def close(self) -> None:
        """Close the connection; unacked messages go back to their queues."""
        self._settle_unconfirmed(quiet=True)
        try:
            self.connection.release()
        except (*self.connection.connection_errors, OSError):
            pass
