"""The benchmark's "processed" counter: counts kept in memory reach Redis, all of them."""

from __future__ import annotations

import threading

import redis

from bench.systems import counter


def test_counts_from_many_threads_all_reach_redis_without_a_flush(redis_url: str) -> None:
    # Given a tally and two counter keys
    tally = counter.Tally(redis_url)
    first, second = counter.new_key(), counter.new_key()

    # When eight threads count 500 messages each, alternating between the keys
    def count() -> None:
        for index in range(500):
            tally.add(first if index % 2 else second)

    threads = [threading.Thread(target=count) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then the harness's wait sees every count under each key, sent by the tally's own thread
    counter.wait_count(redis_url, first, 2_000, timeout=10)
    counter.wait_count(redis_url, second, 2_000, timeout=10)
    client = redis.Redis.from_url(redis_url)
    assert (int(client.get(first) or 0), int(client.get(second) or 0)) == (2_000, 2_000)


def test_a_count_after_a_send_is_sent_too(redis_url: str) -> None:
    # Given a tally with a long interval, whose counts were sent by hand
    tally = counter.Tally(redis_url, send_interval=60)
    key = counter.new_key()
    tally.add(key)
    tally.send()
    # When one more message is counted and sent
    tally.add(key)
    tally.send()
    # Then Redis holds both counts, and nothing is left unsent
    assert int(redis.Redis.from_url(redis_url).get(key) or 0) == 2
    tally.send()
    assert int(redis.Redis.from_url(redis_url).get(key) or 0) == 2
