"""Publishing live events from a worker's hot path without ever slowing it down.

Live events are best effort. :meth:`EventPublisher.publish` only appends to a
bounded in-memory queue; a daemon thread drains it in batches: one Redis
script call (or one kombu producer) per batch, and one message per channel
carrying that channel's events of the batch, one JSON object per line
(:func:`~pyfi.events.event.join_events`), in the order they were published.
When the queue is full the *oldest* event is dropped and counted: a listener
wants to see what happens now, and a worker must never wait for, or fail
because of, a sniffer. When the transport is down the thread logs one warning
a minute, backs off, and keeps going; calls are unaffected.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from typing import Protocol

from pyfi.config import Settings
from pyfi.events.audience import Audience
from pyfi.events.event import LiveEvent, join_events
from pyfi.events.transport import (
    CHANNEL_HEADER,
    CONTENT_TYPE,
    EventRoute,
    event_route,
    events_exchange,
    kombu_api,
    kombu_connection,
    redis_client,
)
from pyfi.resources import Closeable

log = logging.getLogger(__name__)

DEFAULT_MAX_PENDING = 10_000
DEFAULT_BATCH_SIZE = 256
IDLE_WAIT_S = 1.0
# How long the thread lets events gather before sending a batch that is not
# full: a worker publishes four events per call, and every wake-up and round
# trip of the thread costs the worker CPU and its calls latency. At 10 ms,
# calls made one after another paid ≈ 30 µs of CPU per call for their events
# and 0.05-0.15 ms of median latency; at 100 ms the thread wakes a tenth as
# often. A tenth of a second is below what a person watching notices.
LINGER_S = 0.1
WARN_EVERY_S = 60.0
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 10.0


class _Sender(Protocol):
    """One connection to the transport, used by the publisher thread only."""

    def send(self, batch: Sequence[tuple[str, str]]) -> None: ...

    def close(self) -> None: ...


# ARGV: channel, payload, channel, payload... One command per batch: packing
# and parsing a PUBLISH per event cost the worker more than the rest of it.
_PUBLISH_ALL = "for i = 1, #ARGV, 2 do redis.call('PUBLISH', ARGV[i], ARGV[i + 1]) end"


class _RedisSender:
    def __init__(self, url: str) -> None:
        self._client = redis_client(url, socket_timeout=5.0)
        self._publish_all = self._client.register_script(_PUBLISH_ALL)

    def send(self, batch: Sequence[tuple[str, str]]) -> None:
        self._publish_all(keys=[], args=[part for message in batch for part in message])

    def close(self) -> None:
        self._client.close()


class _KombuSender:
    def __init__(self, url: str) -> None:
        self._connection = kombu_connection(url)
        try:
            # connect() tries once; ensure_connection() would retry for minutes.
            self._connection.connect()
            channel = self._connection.channel()
            exchange = events_exchange()(channel)
            exchange.declare()
            self._producer = kombu_api().Producer(channel, exchange=exchange)
        except BaseException:
            self.close()
            raise

    def send(self, batch: Sequence[tuple[str, str]]) -> None:
        for channel, payload in batch:
            self._producer.publish(
                payload,
                routing_key=channel,
                headers={CHANNEL_HEADER: channel},
                content_type=CONTENT_TYPE,
                content_encoding="utf-8",
                delivery_mode=1,  # transient: nothing to keep across a broker restart
                retry=False,
            )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._connection.release()


def _make_sender(route: EventRoute) -> _Sender:
    return _RedisSender(route.url) if route.kind == "redis" else _KombuSender(route.url)


class EventPublisher(Closeable):
    """Sends each :class:`LiveEvent` to its channel, once, in the background.

    One publisher per process is enough; :meth:`publish` is thread-safe. The
    thread starts with the first event, and a forked child starts afresh
    (without its parent's queued events, which the parent still sends).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        max_pending: int = DEFAULT_MAX_PENDING,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        """Prepare a publisher; nothing connects until the first event.

        Parameters
        ----------
        settings:
            Chooses the transport (see :mod:`pyfi.events.transport`).
        max_pending:
            How many events may wait for the thread before the oldest is dropped.
        batch_size:
            How many events the thread sends in one round trip.
        """
        self.route = event_route(settings)
        self._max_pending = max(1, max_pending)
        self._batch_size = max(1, batch_size)
        # A batch is full at batch_size events, or at the bound when that is lower.
        self._full_at = min(self._batch_size, self._max_pending)
        self._reset()
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _reset_in_child(ref))

    def _reset(self) -> None:
        self._lock = threading.Lock()
        # Events, or (channel, JSON) pairs already encoded by the caller.
        self._pending: deque[LiveEvent | tuple[str, str]] = deque()
        self._wakeup = threading.Event()
        self._full = threading.Event()  # a batch is ready: the linger ends early
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closing = False
        # Redis tells who subscribes; a fanout exchange does not, so there
        # everything reads as listened.
        self._audience = Audience(self.route.url) if self.route.kind == "redis" else None
        self._dropped = 0
        self._sent = 0
        self._failed = 0
        self._inflight = 0  # taken by the thread, not yet sent nor failed

    # -- the hot path ------------------------------------------------------

    @property
    def listened(self) -> bool:
        """False only when nobody subscribes to live events: publishing would be for nothing.

        Only known after :meth:`watch_audience`; True until then, and always
        on the broker's fanout exchange. :meth:`publish` sends regardless:
        callers that can skip building events ask first.
        """
        audience = self._audience
        return audience is None or audience.listened

    def watch_audience(self) -> None:
        """Start keeping :attr:`listened` current (see :mod:`pyfi.events.audience`)."""
        if self._audience is not None:
            self._audience.watch()

    def publish(self, event: LiveEvent | tuple[str, str]) -> None:
        """Queue ``event``; never blocks on I/O and never raises for transport trouble.

        ``event`` may also be a ``(channel name, JSON)`` pair from
        :meth:`~pyfi.events.event.EventTemplate.encode`, the cheaper path workers use.
        After :meth:`close`, events are dropped (and counted).
        """
        self.publish_many((event,))

    def publish_many(self, events: Sequence[LiveEvent | tuple[str, str]]) -> None:
        """:meth:`publish` each of ``events``, in order, taking the lock once."""
        with self._lock:
            if self._closing:
                self._dropped += len(events)
                return
            pending = self._pending
            for event in events:
                if len(pending) >= self._max_pending:
                    pending.popleft()
                    self._dropped += 1
                pending.append(event)
            if self._thread is None:
                self._start()
            full = len(pending) >= self._full_at
        if not self._wakeup.is_set():
            self._wakeup.set()
        if full and not self._full.is_set():
            self._full.set()

    # -- counters ----------------------------------------------------------

    @property
    def dropped(self) -> int:
        """Events discarded unsent because the queue was full or the publisher closed."""
        return self._dropped

    @property
    def failed(self) -> int:
        """Events the transport refused or that could not be encoded."""
        return self._failed

    @property
    def sent(self) -> int:
        """Events handed to the transport."""
        return self._sent

    @property
    def pending(self) -> int:
        """Events queued or being sent: neither sent, failed nor dropped yet."""
        with self._lock:
            return len(self._pending) + self._inflight

    # -- lifecycle ---------------------------------------------------------

    def close(self, timeout: float = 5.0) -> bool:
        """Send what is queued, then stop the thread.

        Parameters
        ----------
        timeout:
            Seconds to wait for the flush; the thread is a daemon, so a
            transport that hangs cannot hold the process.

        Returns
        -------
        bool
            True if every queued event was handed to the transport or failed
            for good, False if the flush was still running at ``timeout``.
        """
        with self._lock:
            self._closing = True
            thread = self._thread
        if self._audience is not None:
            self._audience.close()
        self._wakeup.set()
        self._full.set()
        self._stop.set()
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    # -- the thread --------------------------------------------------------

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pyfi-live-events", daemon=True)
        self._thread.start()

    def _take(self) -> list[LiveEvent | tuple[str, str]]:
        with self._lock:
            count = min(self._batch_size, len(self._pending))
            self._inflight = count
            return [self._pending.popleft() for _ in range(count)]

    def _settle(self, *, sent: int, failed: int) -> None:
        with self._lock:
            self._sent += sent
            self._failed += failed
            self._inflight = 0

    def _encode(
        self, batch: list[LiveEvent | tuple[str, str]]
    ) -> tuple[list[tuple[str, str]], int]:
        """One message per channel carrying its events in order, and how many were encoded."""
        by_channel: dict[str, list[str]] = {}
        encoded = 0
        for event in batch:
            if isinstance(event, tuple):
                channel, payload = event
            else:
                try:
                    channel, payload = event.channel_name, event.to_json()
                except Exception:  # a broken __repr__ in data must not stop the thread
                    log.debug("cannot encode a live event", exc_info=True)
                    continue
            by_channel.setdefault(channel, []).append(payload)
            encoded += 1
        messages = [(channel, join_events(payloads)) for channel, payloads in by_channel.items()]
        return messages, encoded

    def _run(self) -> None:
        warnings = _RateLimitedWarning(self.route.label)
        sender: _Sender | None = None
        backoff = BACKOFF_MIN_S
        retry_at = 0.0
        try:
            while True:
                closing = self._closing
                delay = retry_at - time.monotonic()
                if delay > 0 and not closing:
                    self._stop.wait(delay)
                    continue
                if not closing and len(self._pending) < self._batch_size:
                    self._full.wait(LINGER_S)  # cut short by a full batch, or close()
                batch = self._take()
                self._full.clear()  # only a batch filling after this take may cut the next linger
                if not batch:
                    if closing:
                        return
                    self._wakeup.wait(IDLE_WAIT_S)
                    self._wakeup.clear()
                    continue
                messages, encoded = self._encode(batch)
                unencodable = len(batch) - encoded
                try:
                    if sender is None:
                        sender = _make_sender(self.route)
                    sender.send(messages)
                except Exception as exc:  # any transport error: count, warn, back off
                    self._settle(sent=0, failed=len(batch))
                    warnings.failed(exc)
                    if sender is not None:
                        sender.close()
                        sender = None
                    if closing:  # one last try failed: the rest cannot go either
                        self._settle(sent=0, failed=len(self._take_all()))
                        return
                    retry_at = time.monotonic() + backoff
                    backoff = min(backoff * 2, BACKOFF_MAX_S)
                else:
                    self._settle(sent=encoded, failed=unencodable)
                    warnings.recovered()
                    backoff = BACKOFF_MIN_S
        finally:
            if sender is not None:
                sender.close()

    def _take_all(self) -> list[LiveEvent | tuple[str, str]]:
        with self._lock:
            rest = list(self._pending)
            self._pending.clear()
            return rest


class _RateLimitedWarning:
    """One warning when the transport goes away, then at most one a minute."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._last = 0.0
        self._since = 0
        self._down = False

    def failed(self, exc: BaseException) -> None:
        self._since += 1
        now = time.monotonic()
        if self._down and now - self._last < WARN_EVERY_S:
            return
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log.warning(
            "live events cannot reach %s (%s); dropping them until it is back "
            "(%d failed batch(es) so far)",
            self._label,
            first,
            self._since,
        )
        self._down = True
        self._last = now

    def recovered(self) -> None:
        if self._down:
            log.warning("live events reach %s again", self._label)
            self._down = False
            self._since = 0


def _reset_in_child(ref: weakref.ReferenceType[EventPublisher]) -> None:
    # The parent's thread does not exist in the child, and its lock may have
    # been held at the moment of the fork.
    publisher = ref()
    if publisher is not None:
        publisher._reset()
