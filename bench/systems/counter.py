"""How every system's tasks report "processed": one Redis INCR per message.

A fire-and-forget workload has no result to wait for, so its last task bumps a
counter under a key of its own (`bench:<run id>`), and the harness side polls
that key until it reaches n. Every system counts through this module, so the
counting costs the same everywhere.

The task modules of the other systems read the servers they use from two
environment variables, declared here once: the adapters set them for the
worker processes (and for the harness process, before the first import).
"""

from __future__ import annotations

import time
import uuid
from functools import cache
from typing import Any

AMQP_ENV = "PYFI_BENCH_TASKS_AMQP"
REDIS_ENV = "PYFI_BENCH_TASKS_REDIS"

# Short enough not to matter next to workloads of a second or more, long
# enough that the poll itself does not load Redis.
POLL_INTERVAL = 0.002


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


def incr(redis_url: str, key: str) -> None:
    """Count one processed message (called by the tasks).

    Parameters:
        redis_url: the run's Redis database.
        key: the counter key from `new_key`.
    """
    _client(redis_url).incr(key)


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
