"""How every system's tasks report "processed": a count in Redis, sent in bulk.

A fire-and-forget workload has no result to wait for, so its last task
counts the message under a key of its own (`bench:<run id>`), and the harness
side polls that key until it reaches n. Every system counts through this
module, so the counting costs the same everywhere.

A task only adds one to a tally in its process's memory; a daemon thread
sends the tally as one `INCRBY` per key once `SEND_INTERVAL` has passed since
the first count it has not sent. A round trip per message (an `INCR` from the
task) cost each task 60-150 µs of CPU, more than some systems spend on the
message itself, which measured the counting as much as the systems (and the
raw ceiling counts nothing). A count reaches Redis at most `SEND_INTERVAL`
late, a few milliseconds against workloads of a second or more.

The task modules of the other systems read the servers they use from two
environment variables, declared here once: the adapters set them for the
worker processes (and for the harness process, before the first import).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import Counter
from functools import cache
from typing import Any

AMQP_ENV = "PYFI_BENCH_TASKS_AMQP"
REDIS_ENV = "PYFI_BENCH_TASKS_REDIS"

# Short enough not to matter next to workloads of a second or more, long
# enough that the poll itself does not load Redis.
POLL_INTERVAL = 0.002
# How long a count waits in a process's tally before it is sent.
SEND_INTERVAL = 0.002


def new_key() -> str:
    """Return a fresh counter key, one per workload run.

    Returns:
        `bench:<run id>`.
    """
    return f"bench:{uuid.uuid4().hex}"


@cache
def _client(redis_url: str) -> Any:
    import redis

    # redis-py resets its pool after a fork, so a client cached here is safe in
    # prefork children and threads alike.
    return redis.Redis.from_url(redis_url)


class Tally:
    """One process's counts not yet sent, and the thread that sends them."""

    def __init__(self, redis_url: str, send_interval: float = SEND_INTERVAL) -> None:
        self.redis_url = redis_url
        self.send_interval = send_interval
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._pending = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-counter", daemon=True)
        self._thread.start()

    def add(self, key: str) -> None:
        """Count one message under `key`."""
        with self._lock:
            self._counts[key] += 1
        if not self._pending.is_set():
            self._pending.set()

    def send(self) -> None:
        """Send what has been counted so far (the thread does this on its own)."""
        with self._lock:
            counts, self._counts = self._counts, Counter()
            self._pending.clear()
        if counts:
            pipeline = _client(self.redis_url).pipeline(transaction=False)
            for key, count in counts.items():
                pipeline.incrby(key, count)
            pipeline.execute()

    def _run(self) -> None:
        while True:
            self._pending.wait()
            time.sleep(self.send_interval)
            self.send()


_tallies: dict[tuple[str, int], Tally] = {}
_tallies_lock = threading.Lock()


def _tally(redis_url: str) -> Tally:
    # Keyed by process too: a prefork child inherits the dict but not the thread.
    place = (redis_url, os.getpid())
    tally = _tallies.get(place)
    if tally is None:
        with _tallies_lock:
            tally = _tallies.get(place) or _tallies.setdefault(place, Tally(redis_url))
    return tally


def incr(redis_url: str, key: str) -> None:
    """Count one processed message (called by the tasks).

    Parameters:
        redis_url: the run's Redis database.
        key: the counter key from `new_key`.
    """
    _tally(redis_url).add(key)


def wait_count(redis_url: str, key: str, n: int, timeout: float) -> None:
    """Return once the counter under `key` reaches `n`.

    Parameters:
        redis_url: the run's Redis database.
        key: the counter key from `new_key`.
        n: how many messages must have been counted.
        timeout: seconds to wait at most.

    Raises:
        TimeoutError: the count did not reach `n` in time.
    """
    client = _client(redis_url)
    deadline = time.monotonic() + timeout
    while True:
        count = int(client.get(key) or 0)
        if count >= n:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{key}: {count} of {n} counted after {timeout} s")
        time.sleep(POLL_INTERVAL)


def forget(redis_url: str, key: str) -> None:
    """Delete a counter once its workload is over.

    Parameters:
        redis_url: the run's Redis database.
        key: the counter key from `new_key`.
    """
    _client(redis_url).delete(key)
