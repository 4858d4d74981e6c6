"""Listening to live events: Redis PSUBSCRIBE, or a private queue on the fanout exchange.

Patterns are glob-style (``*``, ``?``, ``[...]``) on both transports: Redis
matches them itself, and the fanout listener applies :func:`fnmatch.fnmatchcase`
to each message's channel. A listener only sees events published after
:meth:`EventSubscriber.subscribe` returned; nothing is replayed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from fnmatch import fnmatchcase
from typing import Any, Protocol

from pyfi.config import Settings
from pyfi.errors import EventDecodeError, EventsUnavailable, InvalidValue
from pyfi.events.audience import ANNOUNCE_CHANNEL, ANNOUNCE_TIMEOUT_S, REPLY_PREFIX
from pyfi.events.event import GLOBAL_CHANNEL, GLOBAL_PATTERNS, LiveEvent, events_in
from pyfi.events.transport import (
    CHANNEL_HEADER,
    CONNECT_TIMEOUT_S,
    CONTENT_TYPE,
    EXCHANGE,
    EventRoute,
    event_route,
    events_exchange,
    kombu_api,
    kombu_connection,
    redis_client,
)
from pyfi.resources import Closeable

log = logging.getLogger(__name__)

# How long one wait for a message lasts, so timeouts and close() are honoured.
POLL_S = 0.25
LISTENER_PREFIX = "pyfi.events.listener"
# A listener that falls this far behind loses its oldest events (AMQP only).
LISTENER_MAX_BACKLOG = 10_000


class _Subscription(Protocol):
    def receive(self, timeout: float) -> bytes | str | None: ...

    def close(self) -> None: ...


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


class _RedisSubscription:
    def __init__(self, route: EventRoute, patterns: Sequence[str]) -> None:
        import redis

        self._errors = (redis.RedisError, OSError)
        self._client = redis_client(route.url)
        self._pubsub = self._client.pubsub()
        self._early: deque[bytes] = deque()
        self._label = route.label
        try:
            self._pubsub.psubscribe(*patterns)
            self._await_confirmations(len(set(patterns)), "psubscribe")
            self._announce()
        except self._errors as exc:
            self.close()
            raise EventsUnavailable(
                f"cannot listen to live events on {route.label}: {_first_line(exc)}"
            ) from exc

    def _await_confirmations(self, expected: int, kind: str) -> None:
        # Until Redis confirms, a PUBLISH from another connection may still
        # miss us; callers (and tests) rely on "subscribed" meaning it.
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        confirmed = 0
        while confirmed < expected:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.close()
                raise EventsUnavailable(f"{self._label} did not confirm the subscription")
            message = self._next(remaining)
            if message is not None and message["type"] == kind:
                confirmed += 1

    def _announce(self) -> None:
        """Tell the workers someone listens; return once each that heard has answered.

        Workers publish live events only while someone listens (see
        :mod:`pyfi.events.audience`); without this, the first events after
        ``subscribe()`` could go to nobody until a worker's next count.
        """
        reply = f"{REPLY_PREFIX}{uuid.uuid4().hex}"
        self._pubsub.subscribe(reply)
        self._await_confirmations(1, "subscribe")
        workers = int(self._client.publish(ANNOUNCE_CHANNEL, reply))
        deadline = time.monotonic() + ANNOUNCE_TIMEOUT_S
        answered = 0
        while answered < workers and (remaining := deadline - time.monotonic()) > 0:
            message = self._next(remaining)
            if message is not None and message["type"] == "message":
                answered += 1
        if answered < workers:
            log.debug("%d of %d workers did not answer in time", workers - answered, workers)
        self._pubsub.unsubscribe(reply)

    def _next(self, timeout: float) -> dict[str, Any] | None:
        """The next message that is not an event; events read meanwhile wait in order."""
        message: dict[str, Any] | None = self._pubsub.get_message(timeout=timeout)
        if message is not None and message["type"] == "pmessage":
            self._early.append(message["data"])
            return None
        return message

    def receive(self, timeout: float) -> bytes | None:
        if self._early:
            return self._early.popleft()
        try:
            message = self._pubsub.get_message(timeout=timeout)
        except self._errors as exc:
            raise EventsUnavailable(
                f"lost the connection to {self._label}: {_first_line(exc)}"
            ) from exc
        if message is None or message["type"] != "pmessage":
            return None
        data: bytes = message["data"]
        return data

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._pubsub.close()
        with contextlib.suppress(Exception):
            self._client.close()


class _KombuSubscription:
    def __init__(self, route: EventRoute, patterns: Sequence[str]) -> None:
        kombu = kombu_api()
        self._patterns = list(patterns)
        self._label = route.label
        self._received: deque[bytes | str] = deque()
        self._connection = kombu_connection(route.url, receiving=True)
        self._filesystem = route.url.startswith("filesystem://")
        self._queue: Any = None
        self._consumer: Any = None
        amqp = route.url.startswith(("amqp", "pyamqp"))
        try:
            self._connection.connect()
            channel = self._connection.channel()
            if self._filesystem:
                _prune_dead_listeners(channel)
            self._queue = kombu.Queue(
                _listener_queue_name(),
                exchange=events_exchange(),
                durable=False,
                exclusive=True,
                auto_delete=True,
                queue_arguments=(
                    {"x-max-length": LISTENER_MAX_BACKLOG, "x-overflow": "drop-head"}
                    if amqp
                    else None
                ),
            )(channel)
            self._queue.declare()
            self._consumer = kombu.Consumer(
                channel,
                queues=[self._queue],
                on_message=self._on_message,
                no_ack=True,
                accept=[CONTENT_TYPE],
            )
            self._consumer.consume()
        except Exception as exc:  # kombu raises many unrelated types while connecting
            self.close()
            raise EventsUnavailable(
                f"cannot listen to live events on {route.label}: {_first_line(exc)}"
            ) from exc

    def _on_message(self, message: Any) -> None:
        headers = message.headers or {}
        channel = headers.get(CHANNEL_HEADER) or message.delivery_info.get("routing_key") or ""
        if any(fnmatchcase(channel, pattern) for pattern in self._patterns):
            self._received.append(message.body)

    def receive(self, timeout: float) -> bytes | str | None:
        if not self._received:
            try:
                self._connection.drain_events(timeout=timeout)
            except TimeoutError:
                pass
            except Exception as exc:
                raise EventsUnavailable(
                    f"lost the connection to {self._label}: {_first_line(exc)}"
                ) from exc
        return self._received.popleft() if self._received else None

    def close(self) -> None:
        # Delete the queue explicitly: the filesystem transport has no
        # exclusive queues, and its binding would outlive us.
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                self._consumer.cancel()
            self._consumer = None
        if self._queue is not None:
            with contextlib.suppress(Exception):
                self._queue.delete()
            self._queue = None
        with contextlib.suppress(Exception):
            self._connection.release()


def _listener_queue_name() -> str:
    return f"{LISTENER_PREFIX}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"


def _prune_dead_listeners(channel: Any) -> None:
    """Unbind the queues of listeners on this host that died without closing.

    Otherwise every later event would be written, forever, into a folder
    nobody reads. Best effort: it leans on kombu's filesystem channel.
    """
    prefix = f"{LISTENER_PREFIX}.{socket.gethostname()}."
    try:
        table = channel.get_table(EXCHANGE)
    except Exception:
        return
    for entry in table:
        queue = str(entry.queue)
        pid = queue[len(prefix) :].split(".", 1)[0] if queue.startswith(prefix) else ""
        if not pid.isdigit() or _alive(int(pid)):
            continue
        with contextlib.suppress(Exception):
            channel._delete(queue, EXCHANGE, entry.routing_key, entry.pattern)
            log.info("removed the queue of dead live-event listener %s", queue)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _open(route: EventRoute, patterns: Sequence[str]) -> _Subscription:
    if route.kind == "redis":
        return _RedisSubscription(route, patterns)
    return _KombuSubscription(route, patterns)


class EventSubscriber(Closeable):
    """Receives :class:`LiveEvent` s whose channel matches glob patterns."""

    def __init__(self, settings: Settings) -> None:
        """Prepare a subscriber; nothing connects until :meth:`subscribe`."""
        self.route = event_route(settings)
        self._subscription: _Subscription | None = None
        self._receiving = False

    def subscribe(
        self,
        patterns: Sequence[str],
        *,
        timeout: float | None = None,
        before_wait: Callable[[], object] | None = None,
    ) -> Iterator[LiveEvent]:
        """Subscribe now, and return an iterator over the matching events.

        The subscription is in place when this returns, so an event published
        afterwards is received. A second call replaces the first subscription.

        Parameters
        ----------
        patterns:
            Channel globs, e.g. ``["pyfi.queue1.proc1.task"]``,
            ``["pyfi.queue1.proc1.*"]`` or ``["global"]`` (every channel; any
            other pattern given with it is then redundant and dropped, so an
            event arrives once).
        timeout:
            Seconds after which the iterator stops; ``None`` runs until
            :meth:`close` (which may be called from another thread).
        before_wait:
            Called each time the iterator is about to wait for the next
            message, having yielded every event it holds: the moment to
            flush output written per event (``flow listen`` flushes there,
            once per message instead of once per event).

        Returns
        -------
        Iterator[LiveEvent]
            Events in arrival order; malformed ones are logged and skipped.

        Raises
        ------
        InvalidValue
            If ``patterns`` is empty.
        EventsUnavailable
            If the transport cannot be reached (also raised by the iterator
            if the connection is lost).
        """
        if not patterns:
            raise InvalidValue("subscribe to at least one channel pattern")
        self.close()
        everything = GLOBAL_CHANNEL in patterns
        subscription = _open(self.route, list(GLOBAL_PATTERNS if everything else patterns))
        self._subscription = subscription
        deadline = None if timeout is None else time.monotonic() + timeout
        return self._iterate(subscription, deadline, quiet=everything, before_wait=before_wait)

    def _iterate(
        self,
        subscription: _Subscription,
        deadline: float | None,
        *,
        quiet: bool,
        before_wait: Callable[[], object] | None,
    ) -> Iterator[LiveEvent]:
        # A global listener's patterns also match other applications' channels
        # that happen to end in ".task" or ".log": their messages are not
        # events and are skipped without a warning.
        try:
            # A later subscribe() or close() replaces or clears the current
            # subscription; an older iterator then just stops.
            while self._subscription is subscription:
                wait = POLL_S
                if deadline is not None:
                    wait = min(wait, deadline - time.monotonic())
                    if wait <= 0:
                        return
                if before_wait is not None:
                    before_wait()
                self._receiving = True
                try:
                    raw = subscription.receive(wait)
                finally:
                    self._receiving = False
                if raw is None:
                    continue
                for event in events_in(raw):  # a message may carry several (join_events)
                    if isinstance(event, EventDecodeError):
                        log.log(
                            logging.DEBUG if quiet else logging.WARNING,
                            "skipping a live event: %s",
                            event.message,
                        )
                        continue
                    yield event
        finally:
            subscription.close()

    def close(self) -> None:
        """Stop the current iteration and release the connection.

        From another thread, the iterator notices within a fraction of a
        second and releases the connection itself.
        """
        subscription, self._subscription = self._subscription, None
        if subscription is not None and not self._receiving:
            subscription.close()
