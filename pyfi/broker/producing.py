"""Publishing on a broker connection: confirmed, unconfirmed, awaited, or raw.

RabbitMQ runs with publisher confirms, so :meth:`Producing.publish` returns
only once the broker has taken responsibility for the message;
:meth:`Producing.publish_many` awaits the confirms of a window of messages at
once; :meth:`Producing.publish_unconfirmed` and
:meth:`Producing.publish_awaited` serve a caller that waits for the call's
result anyway. The embedded broker has written a message when its publish
returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from itertools import islice
from typing import Any

from kombu.connection import Connection
from kombu.entity import Exchange
from kombu.messaging import Producer

from pyfi import naming
from pyfi.broker import filesystem
from pyfi.broker.amqp_transport import BufferedTCPTransport
from pyfi.broker.confirms import PendingConfirms, drain_ready, lost_broker
from pyfi.broker.connection import CONNECT_RETRIES, BrokerConnection
from pyfi.broker.declaring import Declarations
from pyfi.broker.topology import SocketRoute
from pyfi.config import mask_url
from pyfi.errors import BrokerUnavailable
from pyfi.message import CONTENT_TYPE, Message

# Publishes in flight before publish_many waits for their confirms.
CONFIRM_WINDOW = 500
# Ids of returned calls kept for their callers to ask about (see returned()).
MAX_RETURNED = 1024


class Producing:
    """The publishing side of one connection, and the confirms it waits for.

    ``forget`` drops the whole connection's state (declarations, channels)
    when a publish finds the connection lost.
    """

    def __init__(
        self,
        connection: BrokerConnection,
        declarations: Declarations,
        forget: Callable[[], None],
    ) -> None:
        self._connection = connection
        self._declarations = declarations
        self._forget = forget
        self._producer: Producer | None = None
        self._published = 0
        self._tagged_channel: Any = None
        # Confirms of publish_unconfirmed calls still to be read (see there).
        self._unconfirmed: list[PendingConfirms] = []
        # The channel of publish_awaited, without confirm mode, and the ids
        # of the calls the broker returned on it as unroutable (oldest first).
        self._awaited_channel: Any = None
        self._returned: dict[str, None] = {}

    @property
    def _kombu(self) -> Connection:
        return self._connection.kombu

    @property
    def _url(self) -> str:
        return self._connection.url

    def forget(self) -> None:
        """Drop what lived on a lost connection: unread confirms, channels, the producer."""
        for pending in self._unconfirmed:
            pending.abandon()
        self._unconfirmed = []
        self._awaited_channel = None
        self._producer = None

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(self._kombu.default_channel)
        return self._producer

    def publish(self, message: Message, route: SocketRoute, *, delay_ms: int = 0) -> None:
        """Publish a call to a socket; returns once the broker has it.

        With ``delay_ms`` the broker holds the message that long first: a
        TTL queue that dead-letters into the socket's queue on RabbitMQ, a
        due time in the file name on the embedded broker.
        """
        self._declarations.declare(route)
        body = message.encode()
        headers: dict[str, Any] = {"pyfi-socket": message.socket}
        if delay_ms <= 0:
            self._send(
                body,
                self._declarations.exchange(route),
                route.routing_key,
                headers,
                message.call_id,
            )
        elif self._connection.is_filesystem:
            headers[filesystem.DUE_HEADER] = int(time.time() * 1000) + delay_ms
            self._send(body, naming.DEFAULT_EXCHANGE, route.queue, headers, message.call_id)
        else:
            holding = naming.delay_queue(route.socket, delay_ms)
            self._declarations.ensure_plain(
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
        if not self._connection.confirms:
            for message, route in items:
                self.publish(message, route)
            return
        channel = self._confirm_channel()
        # Confirms may be read while publishing (py-amqp drains pending frames
        # before each publish), so they are counted, not waited for one by one.
        pending = PendingConfirms(channel, self._url)
        try:
            source = iter(items)
            while window := list(islice(source, CONFIRM_WINDOW)):
                self._send_window(channel, window, pending)
                pending.wait()
        except (*self._kombu.connection_errors, TimeoutError) as exc:
            if isinstance(exc, TimeoutError):
                self._unconfirmed.append(pending)  # late confirms are still read as its own
            else:
                pending.abandon()
            raise lost_broker(self._url, exc) from exc
        pending.settle(self._kombu.connection_errors)

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
        if not self._connection.confirms:
            self.publish(message, route)
            return PendingConfirms(None, self._url)
        channel = self._confirm_channel()
        pending = PendingConfirms(channel, self._url)
        try:
            self._send_window(channel, [(message, route)], pending)
        except self._kombu.connection_errors as exc:
            pending.abandon()
            raise lost_broker(self._url, exc) from exc
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
        if not self._connection.confirms:
            self.publish(message, route)
            return
        try:
            self._send_window(self._awaited(), [(message, route)], None)
        except (*self._kombu.connection_errors, OSError) as exc:
            self._forget()
            raise lost_broker(self._url, exc) from exc

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
            except self._kombu.channel_errors as exc:  # py-amqp has reopened the channel
                self._declarations.forget()
                raise BrokerUnavailable(
                    f"the message broker {mask_url(self._url)} closed the channel of call "
                    f"{call_id}: {exc}; call again to declare its socket's queue and exchange"
                ) from exc
            except (*self._kombu.connection_errors, OSError) as exc:
                self._forget()
                raise lost_broker(self._url, exc) from exc
        if call_id not in self._returned:
            return False
        del self._returned[call_id]
        self._declarations.forget()
        return True

    def _awaited(self) -> Any:
        """The channel of :meth:`publish_awaited` on the current connection, opened as needed.

        kombu replaces a lost connection without closing the channels of the
        old one (they still read as open), so the channel is checked against
        the connection kombu holds now, which reconnects if need be.
        """
        channel = self._awaited_channel
        current = self._kombu.connection
        if channel is None or not channel.is_open or channel.connection is not current:
            channel = self._kombu.channel()
            channel.events["basic_return"].add(self._on_returned)
            self._awaited_channel = channel
        return channel

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
        except (*self._kombu.connection_errors, *self._kombu.channel_errors, OSError):
            live = []  # the channel is gone: no confirm can come on it
        for pending in self._unconfirmed:
            if pending not in live or pending.settled:
                pending.abandon()
        self._unconfirmed = [pending for pending in live if not pending.settled]

    def settle_unconfirmed(self, *, quiet: bool = False) -> None:
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
            except self._kombu.connection_errors:
                pass  # the connection is gone, and its confirms with it
            except TimeoutError as exc:
                if not quiet:
                    raise BrokerUnavailable(
                        f"the message broker {mask_url(self._url)} has not confirmed "
                        f"earlier calls: {exc}"
                    ) from exc
            self._unconfirmed.pop(0).abandon()

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
            self._declarations.declare(route)
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
                    exchange=self._declarations.exchange(route).name,
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
        self._declarations.ensure_plain(queue)
        self._send(body, naming.DEFAULT_EXCHANGE, queue, headers, None)

    def _send(
        self,
        body: bytes,
        exchange: Exchange | str,
        routing_key: str,
        headers: dict[str, Any],
        message_id: str | None,
    ) -> None:
        self.settle_unconfirmed()
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
        except self._kombu.connection_errors as exc:
            raise lost_broker(self._url, exc) from exc
