"""Publisher confirms of messages sent on one channel, counted as they arrive.

RabbitMQ confirms a persistent message once it is safe (written to disk, or
delivered and acknowledged). Waiting for each confirm before the next step is
what makes ``publish`` a promise; counting them instead of waiting one by one
is what makes a window of thousands fast. A caller that will see the outcome
of its call anyway (the result proves the delivery) may also read the confirm
later, or not at all: :class:`PendingConfirms` keeps the count until then.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pyfi.config import mask_url
from pyfi.errors import BrokerUnavailable

CONFIRM_TIMEOUT_S = 30


class BrokerConnectionLost(BrokerUnavailable):
    """The connection went away (or its confirms never came) while publishing.

    Unlike a refusal (a nack), publishing the same messages again on a new
    connection may well succeed; their ids make a repeat recognisable.
    """


def lost_broker(url: str, exc: BaseException) -> BrokerConnectionLost:
    """The error for a connection lost (or confirms missing) while publishing to ``url``."""
    return BrokerConnectionLost(f"lost the message broker {mask_url(url)} while publishing: {exc}")


def drain_ready(connection: Any, until: Callable[[], bool] = lambda: False) -> None:
    """Dispatch every frame that has come on ``connection``, without waiting for more.

    Stops early once ``until()`` holds. Connection errors propagate.
    """
    try:
        while not until():
            connection.drain_events(timeout=0)
    except TimeoutError:  # nothing more has come yet
        pass


class PendingConfirms:
    """The confirms still to come for the delivery tags added, on one channel.

    Listens to the channel's ``basic_ack`` and ``basic_nack`` events from
    construction until :meth:`settle` or :meth:`abandon`; confirms are read
    whenever anything reads the connection (py-amqp dispatches them), so a
    window of messages is counted, not awaited message by message.
    ``channel`` None stands for a broker without confirms (the embedded one,
    which writes before ``publish`` returns): nothing is pending.
    """

    def __init__(self, channel: Any, url: str) -> None:
        self._channel = channel
        self._url = url
        self.outstanding: set[int] = set()
        self.refused = 0
        if channel is not None:
            channel.events["basic_ack"].add(self._on_ack)
            channel.events["basic_nack"].add(self._on_nack)

    @property
    def settled(self) -> bool:
        """True once every confirm has come, or nobody counts them any more."""
        return self._channel is None or not self.outstanding

    def add(self, delivery_tag: int) -> None:
        """Expect the confirm of ``delivery_tag``."""
        self.outstanding.add(delivery_tag)

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        if multiple:
            self.outstanding.difference_update(
                [tag for tag in self.outstanding if tag <= delivery_tag]
            )
        else:
            self.outstanding.discard(delivery_tag)

    def _on_nack(self, delivery_tag: int, multiple: bool, *_: Any) -> None:
        before = len(self.outstanding)
        self._on_ack(delivery_tag, multiple)
        self.refused += before - len(self.outstanding)

    def wait(self, timeout_s: float = CONFIRM_TIMEOUT_S) -> None:
        """Read the connection until every expected confirm has come.

        Raises
        ------
        TimeoutError
            Some are still missing after ``timeout_s``; they are still
            counted when they come.
        """
        if self._channel is None:
            return
        # One fixed timeout, left on the socket: py-amqp changes the socket's
        # timeout around every read whose timeout differs from the standing
        # one (two system calls per confirm read); the deadline is kept here.
        connection = self._channel.connection
        sock = getattr(connection.transport, "sock", None)
        if sock is not None and sock.gettimeout() != CONFIRM_TIMEOUT_S:
            sock.settimeout(CONFIRM_TIMEOUT_S)
        deadline = time.monotonic() + timeout_s
        while self.outstanding:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{len(self.outstanding)} publisher confirms still missing")
            connection.drain_events(timeout=min(remaining, CONFIRM_TIMEOUT_S))

    def collect(self) -> bool:
        """Read the confirms that have come, without waiting; True once none is missing."""
        if self._channel is None:
            return True
        drain_ready(self._channel.connection, until=lambda: not self.outstanding)
        return not self.outstanding

    def abandon(self) -> None:
        """Stop counting: confirms that come later are read and ignored.

        Only for confirms that can no longer come (the connection is gone)
        or once all have: kombu's ``Producer.publish`` takes the next confirm
        read as its own, so an abandoned confirm still to come would be
        taken for another message's.
        """
        if self._channel is not None:
            self._channel.events["basic_ack"].discard(self._on_ack)
            self._channel.events["basic_nack"].discard(self._on_nack)
            self._channel = None

    def settle(self, connection_errors: tuple[type[BaseException], ...] = ()) -> None:
        """Wait for the confirms, stop counting, and raise if any message was refused.

        Raises
        ------
        BrokerUnavailable
            The broker refused a message (nack), the connection was lost
            (one of ``connection_errors``), or confirms did not come in time
            (they are still counted if they come later): the caller cannot
            know which of its messages got through.
        """
        lost: tuple[type[BaseException], ...] = (*connection_errors, TimeoutError)
        try:
            self.wait()
        except lost as exc:
            if not isinstance(exc, TimeoutError):
                self.abandon()
            raise lost_broker(self._url, exc) from exc
        self.abandon()
        if self.refused:
            raise BrokerUnavailable(
                f"the message broker {mask_url(self._url)} refused {self.refused} published call(s)"
            )
