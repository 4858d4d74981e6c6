"""Whether anyone listens to live events on Redis, so that workers publish only then.

Redis drops a PUBLISH that no client subscribes to, yet a worker paid for
building, queueing, encoding and sending its four events per call all the
same: about 8 % of a no-op call's throughput, for nobody. A worker therefore
publishes only while someone listens, and finds out in two ways:

* a daemon thread counts the server's subscribers every :data:`RECHECK_S`:
  pattern subscriptions (what ``flow listen`` and event relays use) and
  channel subscriptions other than the workers' own :data:`ANNOUNCE_CHANNEL`.
  Subscribers of other applications on the same server count too: when in
  doubt, publish.
* a listener announces itself on :data:`ANNOUNCE_CHANNEL` once subscribed,
  naming a reply channel; each watching worker starts publishing and
  replies, and :meth:`pyfi.events.EventSubscriber.subscribe` returns only
  once every worker that heard the announcement has replied. A listener so
  still sees every event published after ``subscribe()`` returns.

Whatever cannot be known (before the first count, while Redis is away) reads
as "listened": the publisher already copes with an unreachable server.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from pyfi.events.transport import redis_client
from pyfi.resources import Closeable

log = logging.getLogger(__name__)

ANNOUNCE_CHANNEL = "pyfi.events.listening"
"""Where a new listener names its reply channel; every watching worker subscribes."""
REPLY_PREFIX = f"{ANNOUNCE_CHANNEL}.reply."
# How often a worker counts subscribers. A listener that has gone is noticed
# this late (events keep flowing to nobody meanwhile); one that arrives is
# told to every worker at once by its announcement.
RECHECK_S = 1.0
# How long a listener waits for the workers' replies before it gives up on
# the slow ones (their first events may then be missed).
ANNOUNCE_TIMEOUT_S = 2.0
RETRY_S = 5.0
_ANNOUNCE = ANNOUNCE_CHANNEL.encode()
_REPLY_PREFIX = REPLY_PREFIX.encode()


def count_listeners(client: Any) -> int:
    """Subscriptions on the server other than the workers' announcement channel."""
    with client.pipeline(transaction=False) as pipe:
        pipe.pubsub_numpat()
        pipe.pubsub_channels()
        patterns, channels = pipe.execute()
    return int(patterns) + sum(1 for channel in channels if channel != _ANNOUNCE)


class Audience(Closeable):
    """Tells a worker's event sink whether anyone subscribes, kept current by a thread.

    :attr:`listened` is a plain attribute, read once per lifecycle step on
    the worker's hot path; only the thread writes it.
    """

    def __init__(self, url: str) -> None:
        self._url = url
        self.listened = True
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self) -> None:
        """Start the thread (once); until its first count, :attr:`listened` stays True."""
        if self._thread is None and not self._stop.is_set():
            self._thread = threading.Thread(
                target=self._run, name="pyfi-event-audience", daemon=True
            )
            self._thread.start()

    def close(self) -> None:
        """Stop watching; from now on everything reads as listened.

        The thread is not joined: it notices within :data:`RECHECK_S`, and
        it is a daemon.
        """
        self._stop.set()
        self.listened = True

    def _run(self) -> None:
        import redis

        while not self._stop.is_set():
            client = redis_client(self._url, socket_timeout=RECHECK_S + RETRY_S)
            pubsub = client.pubsub()
            try:
                self._watch(client, pubsub)
            except (redis.RedisError, OSError) as exc:
                self.listened = True  # cannot tell: publish, and let the publisher cope
                log.debug("cannot count live-event listeners: %s", exc)
                self._stop.wait(RETRY_S)
            finally:
                pubsub.close()
                client.close()
        self.listened = True

    def _watch(self, client: Any, pubsub: Any) -> None:
        pubsub.subscribe(ANNOUNCE_CHANNEL)
        # Count only once subscribed: a listener that announced between the
        # count and the subscription would otherwise reach nobody.
        if not self._subscribed(pubsub):
            return
        while not self._stop.is_set():
            self.listened = count_listeners(client) > 0
            deadline = time.monotonic() + RECHECK_S
            while not self._stop.is_set() and (remaining := deadline - time.monotonic()) > 0:
                message = pubsub.get_message(timeout=remaining)
                if message is None or message["type"] != "message":
                    continue
                reply = message["data"]
                if isinstance(reply, bytes) and reply.startswith(_REPLY_PREFIX):
                    # Set before replying: the listener's subscribe() returns
                    # on the reply, and must find this worker publishing.
                    self.listened = True
                    client.publish(reply, b"")

    def _subscribed(self, pubsub: Any) -> bool:
        """Wait for Redis to confirm the announcement channel; False if stopped first."""
        while not self._stop.is_set():
            message = pubsub.get_message(timeout=RECHECK_S)
            if message is not None and message["type"] == "subscribe":
                return True
        return False
