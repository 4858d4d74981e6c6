"""Workers publish live events only while someone listens, and a new listener misses nothing.

Pub/sub subscriptions are server-wide, so "nobody listens" can only be
asserted on a Redis server of the test's own: each test starts one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from pyfi.config import Settings
from pyfi.events import EventPublisher, EventSubscriber, LiveEvent, channel_name
from pyfi.events import audience as audience_module
from pyfi.events.audience import Audience, count_listeners
from tests.conftest import IN_CI
from tests.private_redis import REDIS_SERVER, RedisServer

WatchFactory = Callable[[float], Audience]

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(REDIS_SERVER is None and not IN_CI, reason="redis-server is not installed"),
]


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[str]:
    """A Redis server only this test talks to; stopped afterwards."""
    server = RedisServer(tmp_path / "redis")
    try:
        yield server.url()
    finally:
        server.stop()


def _until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.01)


def settings_for(url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'pyfi.sqlite'}",
        broker_url=f"filesystem://{tmp_path / 'broker'}",
        backend_url=url,
        data_dir=tmp_path,
        ini_path=tmp_path / "pyfi.ini",
    )


@pytest.fixture
def watching(private_redis: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[WatchFactory]:
    """Start a worker's audience watcher on the private server, counting every ``recheck_s``."""
    watchers: list[Audience] = []

    def watch(recheck_s: float) -> Audience:
        monkeypatch.setattr(audience_module, "RECHECK_S", recheck_s)
        watcher = Audience(private_redis)
        watcher.watch()
        watchers.append(watcher)
        return watcher

    yield watch
    for watcher in watchers:
        watcher.close()


def test_the_count_ignores_the_workers_own_announcement_channel(
    private_redis: str, watching: WatchFactory
) -> None:
    # Given a worker watching (subscribed to the announcement channel) and nothing else
    watching(1.0)
    client = redis.Redis.from_url(private_redis)
    try:
        _until(lambda: client.pubsub_numsub(audience_module.ANNOUNCE_CHANNEL)[0][1] == 1,
               "the worker to subscribe")  # fmt: skip
        # Then nobody is counted
        assert count_listeners(client) == 0
        # And a pattern subscriber and another application's channel each count
        patterns, channels = client.pubsub(), client.pubsub()
        patterns.psubscribe("*.task")
        channels.subscribe("someone-elses-channel")
        _until(lambda: count_listeners(client) == 2, "both subscriptions to show")
        patterns.close()
        channels.close()
    finally:
        client.close()


def test_a_publisher_learns_that_nobody_listens_then_that_someone_does(
    private_redis: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a worker's publisher watching its audience, counting only every 30 s
    monkeypatch.setattr(audience_module, "RECHECK_S", 30.0)
    settings = settings_for(private_redis, tmp_path)
    with EventPublisher(settings) as publisher:
        publisher.watch_audience()
        # When nobody subscribes, its first count says so
        _until(lambda: not publisher.listened, "the first count")
        # And when a listener subscribes (long before the next count)
        queue = f"pyfi.t{uuid.uuid4().hex[:10]}"
        with EventSubscriber(settings) as subscriber:
            events = subscriber.subscribe([channel_name(queue, "proc1", "task")], timeout=5)
            # Then the worker publishes again by the time subscribe() has returned
            assert publisher.listened
            sent = LiveEvent.create("task", "received", queue=queue, processor="proc1")
            publisher.publish(sent)
            assert next(events) == sent


def test_a_listener_that_leaves_is_noticed_at_the_next_count(
    private_redis: str, tmp_path: Path, watching: WatchFactory
) -> None:
    # Given a watching worker, counting every 0.1 s, and a listener
    watcher = watching(0.1)
    subscriber = EventSubscriber(settings_for(private_redis, tmp_path))
    subscriber.subscribe(["*.task"], timeout=5)
    assert watcher.listened
    # When the listener goes away
    subscriber.close()
    # Then the worker stops publishing
    _until(lambda: not watcher.listened, "the worker to notice")


def test_a_lost_server_reads_as_listened(private_redis: str, watching: WatchFactory) -> None:
    # Given a watching worker that knows nobody listens
    watcher = watching(0.1)
    _until(lambda: not watcher.listened, "the first count")
    # When the server goes away
    redis.Redis.from_url(private_redis).shutdown(nosave=True)
    # Then it cannot tell, so it publishes (and the publisher copes with the outage)
    _until(lambda: watcher.listened, "the worker to notice the outage")
