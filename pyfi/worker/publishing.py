"""One publishing thread for a worker's pool, confirming many threads' messages at once.

Every downstream message (a plug's delivery, a flow's next step) must be
confirmed by the broker before the message that caused it is acknowledged.
Waiting for one confirm per message cost each pool thread a round trip and,
in py-amqp, more CPU than the publish itself. Here pool threads hand their
messages to one thread, which publishes whatever has gathered meanwhile and
awaits the broker's confirms for all of it together
(:meth:`pyfi.broker.Broker.publish_many`); each caller still returns only
once its own messages are confirmed, or raises if they may not be.

A caller that has other work to do hands its messages over with
:meth:`BatchPublisher.publish_then` instead, and is told their fate by a
callback: a pool thread need not sit out the broker's confirm (for a
persistent message, its write to disk) while calls wait in its queue.

A lost connection does not fail the callers: the batch is published again on
a new connection once the broker is back (its messages' ids make a repeat
recognisable downstream), so a call under way when the broker blinked still
finishes, stores its outcome, and is not run again when redelivered. Only a
refusal (a nack), a broker never reached at all, or
:meth:`BatchPublisher.stop_retrying` while the broker is away, fails them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from pyfi.broker import Broker, SocketRoute
from pyfi.broker.confirms import BrokerConnectionLost
from pyfi.config import mask_url
from pyfi.errors import BrokerUnavailable, first_line
from pyfi.message import Message
from pyfi.resources import Closeable

log = logging.getLogger("pyfi.worker")

# The most messages published under one wait for confirms.
MAX_BATCH = 500
# The waits between two attempts to publish a batch on a lost broker.
RETRY_INITIAL_S = 0.2
RETRY_MAX_S = 2.0

# Told the fate of messages handed over: None once confirmed, else why not.
Confirmed = Callable[[BaseException | None], None]


class _Request:
    """Messages of one caller, and the news of their fate."""

    __slots__ = ("callback", "done", "error", "items")

    def __init__(
        self, items: Sequence[tuple[Message, SocketRoute]], callback: Confirmed | None = None
    ) -> None:
        self.items = items
        self.callback = callback
        self.error: BaseException | None = None
        if callback is None:
            # Held until the publishing thread releases it: a plain lock costs
            # a fraction of an Event (a condition and a lock).
            self.done = threading.Lock()
            self.done.acquire()

    def settle(self) -> None:
        """Tell the caller: release its wait, or run its callback (which must not block)."""
        if self.callback is None:
            self.done.release()
            return
        try:
            self.callback(self.error)
        except Exception:
            log.exception("a published message's callback failed")


class BatchPublisher(Closeable):
    """Publishes with confirms on behalf of many threads, one confirm wait per batch."""

    def __init__(self, broker_url: str) -> None:
        self._broker_url = broker_url
        self._requests: deque[_Request] = deque()
        self._wake = threading.Condition()
        self._closed = False
        self._retrying = True
        # A broker reached once is waited for when lost; one never reached is reported.
        self._reached = False
        self._thread = threading.Thread(target=self._run, name="pyfi-publisher", daemon=True)
        self._thread.start()

    def publish(self, message: Message, route: SocketRoute) -> None:
        """Publish one message; returns once the broker confirmed it.

        Raises
        ------
        BrokerUnavailable
            The broker did not confirm it (it may or may not have it).
        """
        self.publish_many([(message, route)])

    def publish_many(self, items: Sequence[tuple[Message, SocketRoute]]) -> None:
        """Publish messages; returns once the broker confirmed every one.

        Raises
        ------
        BrokerUnavailable
            The broker did not confirm them all (some may have got through:
            their ids make a repeat recognisable downstream).
        """
        if not items:
            return
        request = _Request(items)
        self._hand_over(request)
        request.done.acquire()
        if request.error is not None:
            raise request.error

    def publish_then(
        self, items: Sequence[tuple[Message, SocketRoute]], callback: Confirmed
    ) -> None:
        """Publish messages and return at once; ``callback`` is told once all are confirmed.

        ``callback`` runs on the publishing thread with ``None``, or with the
        error that makes them unconfirmed (some may have got through). It
        must hand its work on, not do it: other callers' messages wait
        while it runs.

        Raises
        ------
        BrokerUnavailable
            The publisher is closed (nothing was handed over).
        """
        self._hand_over(_Request(items, callback))

    def _hand_over(self, request: _Request) -> None:
        with self._wake:
            if self._closed:
                raise BrokerUnavailable("the worker's publisher is closed")
            self._requests.append(request)
            self._wake.notify()

    def stop_retrying(self) -> None:
        """Fail, from now on, what cannot be published for want of a connection.

        For a worker that stops while the broker is away: its calls waiting
        on a publish end (their messages are redelivered later) instead of
        waiting for the broker to come back.
        """
        with self._wake:
            self._retrying = False
            self._wake.notify_all()

    def close(self) -> None:
        """Publish what is queued, then stop the thread."""
        with self._wake:
            self._closed = True
            self._retrying = False
            self._wake.notify_all()
        self._thread.join()

    def _pause_before_retry(self, delay_s: float) -> bool:
        """Wait ``delay_s`` before publishing again; False if retrying has been given up."""
        with self._wake:
            if self._retrying:
                self._wake.wait_for(lambda: not self._retrying, timeout=delay_s)
            return self._retrying

    def _take(self) -> list[_Request] | None:
        with self._wake:
            while not self._requests and not self._closed:
                self._wake.wait()
            if not self._requests:
                return None
            batch: list[_Request] = []
            count = 0
            while self._requests and (not batch or count < MAX_BATCH):
                request = self._requests.popleft()
                batch.append(request)
                count += len(request.items)
            return batch

    def _run(self) -> None:
        broker: Broker | None = None
        try:
            while (batch := self._take()) is not None:
                broker = self._publish(broker, batch)
                for request in batch:
                    request.settle()
        finally:
            if broker is not None:
                broker.close()

    def _publish(self, broker: Broker | None, batch: list[_Request]) -> Broker | None:
        """Publish ``batch`` (again, on a new connection, while the broker is lost); the broker.

        Sets each request's error when its messages may not have got through.
        """
        delay_s, lost_since = RETRY_INITIAL_S, 0.0
        while True:
            connecting = broker is None
            try:
                if broker is None:
                    broker = Broker(self._broker_url)
                    self._reached = True
                connecting = False
                broker.publish_many(item for request in batch for item in request.items)
            except Exception as exc:  # the callers decide: each requeues its message
                if broker is not None:
                    broker.close()
                    broker = None
                # Lost or unreachable, not refused: the same messages may go through later.
                lost = self._reached and (
                    isinstance(exc, BrokerConnectionLost)
                    or (connecting and isinstance(exc, BrokerUnavailable))
                )
                if lost and not lost_since:
                    lost_since = time.monotonic()
                    log.warning(
                        "publisher: lost the message broker %s (%s); publishing again "
                        "once it is back",
                        mask_url(self._broker_url),
                        first_line(exc),
                    )
                if lost and self._pause_before_retry(delay_s):
                    delay_s = min(delay_s * 2, RETRY_MAX_S)
                    continue
                error = exc if isinstance(exc, BrokerUnavailable | OSError) else (
                    BrokerUnavailable(f"publishing failed: {type(exc).__name__}: {exc}")
                )  # fmt: skip
                for request in batch:
                    request.error = error
                return broker
            if lost_since:
                log.info(
                    "publisher: reconnected to the message broker %s after %.1fs",
                    mask_url(self._broker_url),
                    time.monotonic() - lost_since,
                )
            return broker
