"""Celery 5 on the run's RabbitMQ (broker) and Redis (result backend).

One `celery worker --pool prefork --concurrency 2` (a parent and two pool
processes). The workloads are written the way the Celery docs do them:

- W1 `noop.delay` n times, then `get()` on each result (Redis pub/sub). On this
  machine neither `ResultSet.join_native` nor a `group` was faster for 10,000
  calls (`join_native` was up to 1.5 times slower), so the plain calls stay.
- W2 `count.delay` n times (`ignore_result`), then the shared counter.
- W3 `noop.delay(i).get()` one after another.
- W4 `chain(step.s(0), step.s(), ...)`, then `get()` on each chain's last result.
- W5 `chord(noop.s(i) for i in range(width))(gather.s())`, then `get()` on each.
- W6 `hop1.apply_async(link=hop2.s())` where `hop2` links `hop3`, which counts:
  the steps are wired in the messages (`link`), not by the caller's waiting.
"""

from __future__ import annotations

import os
import sys
import time
from types import ModuleType
from typing import TYPE_CHECKING, Any

from bench.systems import counter
from bench.systems.base import Services, System
from bench.systems.raw import delete_queues, wait_consumers

if TYPE_CHECKING:
    from celery.result import AsyncResult

QUEUE = "celery"  # Celery's default queue
# Celery's own exchanges: tasks, remote control (and its replies), events.
EXCHANGES = (QUEUE, "celery.pidbox", "reply.celery.pidbox", "celeryev")
START_TIMEOUT = 120.0
TIMEOUT = 600.0  # for any one workload


def _tasks(services: Services) -> ModuleType:
    """Import the Celery app for these services (it reads them at import)."""
    if "bench.systems.celery_tasks" not in sys.modules:
        os.environ[counter.AMQP_ENV] = services.amqp_url
        os.environ[counter.REDIS_ENV] = services.redis_url
    from bench.systems import celery_tasks

    if (services.amqp_url, services.redis_url) != (celery_tasks.AMQP_URL, celery_tasks.REDIS_URL):
        raise RuntimeError("the Celery app was imported for other services: one run per process")
    return celery_tasks


def _values(results: list[AsyncResult]) -> list[Any]:
    """Fetch every result, in order, each within the workload's timeout."""
    deadline = time.monotonic() + TIMEOUT
    return [result.get(timeout=max(0.01, deadline - time.monotonic())) for result in results]


class CelerySystem(System):
    """Celery with two prefork worker processes."""

    name = "celery"

    def __init__(self, services: Services) -> None:
        super().__init__(services)
        self.tasks = _tasks(services)

    def start(self) -> None:
        self.spawn(
            [
                *("celery", "-A", "bench.systems.celery_tasks"),
                *("worker", "--pool", "prefork", "--concurrency", "2"),
                *("--loglevel", "WARNING", "--hostname", "bench@%h"),
            ],
            "celery.log",
        )
        # The parent process holds the one consumer; the pool is up before it.
        wait_consumers(self.services.amqp_url, QUEUE, 1, START_TIMEOUT, self.processes)
        # One round trip, so that the first measured call does not pay for this
        # process's connections to the broker and the result store.
        self.tasks.noop.delay(0).get(timeout=START_TIMEOUT)

    def stop(self) -> None:
        super().stop()
        # Results stay in the run's Redis database, which the harness flushes.
        delete_queues(self.services.amqp_url, [QUEUE], EXCHANGES)

    def roundtrip(self, n: int) -> None:
        noop = self.tasks.noop
        results = [noop.delay(i) for i in range(n)]
        # One get() per result: Celery's bulk ResultSet.join_native (MGET
        # polling) measured slower here (472 against 796 calls/s).
        if _values(results) != list(range(n)):
            raise RuntimeError("W1: wrong results")

    def fire_and_forget(self, n: int) -> None:
        count, key = self.tasks.count, counter.new_key()
        try:
            for i in range(n):
                count.delay(i, key)
            counter.wait_count(self.services.redis_url, key, n, TIMEOUT)
        finally:
            counter.forget(self.services.redis_url, key)

    def latencies(self, n: int) -> list[float]:
        noop = self.tasks.noop
        seconds = []
        for i in range(n):
            start = time.perf_counter()
            noop.delay(i).get(timeout=TIMEOUT)
            seconds.append(time.perf_counter() - start)
        return seconds

    def pipelines(self, n: int, length: int) -> None:
        from celery import chain

        step = self.tasks.step
        results = [
            chain(step.s(0), *(step.s() for _ in range(length - 1))).apply_async() for _ in range(n)
        ]
        if _values(results) != [length] * n:
            raise RuntimeError("W4: wrong results")

    def funnels(self, n: int, width: int) -> None:
        from celery import chord

        noop, gather = self.tasks.noop, self.tasks.gather
        results = [chord(noop.s(i) for i in range(width))(gather.s()) for _ in range(n)]
        if _values(results) != [width * (width - 1) // 2] * n:
            raise RuntimeError("W5: wrong results")

    def plug_chain(self, n: int) -> None:
        key = counter.new_key()
        second = self.tasks.hop2.s()
        second.link(self.tasks.hop3.s(key))
        hop1 = self.tasks.hop1
        try:
            for i in range(n):
                hop1.apply_async((i,), link=second)
            counter.wait_count(self.services.redis_url, key, n, TIMEOUT)
        finally:
            counter.forget(self.services.redis_url, key)
