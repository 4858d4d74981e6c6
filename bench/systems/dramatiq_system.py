"""Dramatiq 1 on the run's RabbitMQ (broker) and Redis (results, group barriers).

One `dramatiq --processes 2 --threads 8` (two worker processes with
Dramatiq's default eight threads each). The workloads, in Dramatiq's terms:

- W1 `noop.send` n times, then `get_result(block=True)` for each message.
- W2 `count.send` n times (no result stored), then the shared counter.
- W3 `noop.send(i).get_result(block=True)` one after another.
- W4 `pipeline([step.message(0), step.message(), ...]).run()`, then
  `get_result(block=True)` on each pipeline.
- W5 `group(noop.message(i) ...)` with `add_completion_callback(gather.message(ids))`
  (there is no chord: see dramatiq_tasks), then the callbacks' results.
- W6 `pipeline([hop1.message(i), hop2.message(), hop3.message(key=key)]).run()`;
  `hop3` counts.
"""

from __future__ import annotations

import os
import sys
import time
from types import ModuleType

from bench.systems import counter
from bench.systems.base import Services, System
from bench.systems.raw import delete_queues, wait_consumers

QUEUE = "default"  # Dramatiq's default queue, with its delay and dead-letter queues
QUEUES = (QUEUE, f"{QUEUE}.DQ", f"{QUEUE}.XQ")
START_TIMEOUT = 120.0
TIMEOUT_MS = 600_000  # for any one workload; Dramatiq counts in milliseconds


def _tasks(services: Services) -> ModuleType:
    """Import the actors for these services (they are read at import)."""
    if "bench.systems.dramatiq_tasks" not in sys.modules:
        os.environ[counter.AMQP_ENV] = services.amqp_url
        os.environ[counter.REDIS_ENV] = services.redis_url
    from bench.systems import dramatiq_tasks

    if (services.amqp_url, services.redis_url) != (
        dramatiq_tasks.AMQP_URL,
        dramatiq_tasks.REDIS_URL,
    ):
        raise RuntimeError("the actors were imported for other services: one run per process")
    return dramatiq_tasks


class DramatiqSystem(System):
    """Dramatiq with two worker processes of eight threads."""

    name = "dramatiq"

    def __init__(self, services: Services) -> None:
        super().__init__(services)
        self.tasks = _tasks(services)

    def start(self) -> None:
        self.spawn(
            [
                *("dramatiq", "bench.systems.dramatiq_tasks:broker"),
                *("--processes", "2", "--threads", "8"),
            ],
            "dramatiq.log",
        )
        # Each worker process has a consumer on the queue.
        wait_consumers(self.services.amqp_url, QUEUE, 2, START_TIMEOUT, self.processes)
        # One round trip, so that the first measured call does not pay for this
        # process's connections to the broker and the result store.
        self.tasks.noop.send(0).get_result(
            backend=self.tasks.results, block=True, timeout=int(START_TIMEOUT * 1000)
        )

    def stop(self) -> None:
        super().stop()
        # Results and barriers stay in the run's Redis database, which the
        # harness flushes.
        delete_queues(self.services.amqp_url, QUEUES)

    def roundtrip(self, n: int) -> None:
        noop, results = self.tasks.noop, self.tasks.results
        messages = [noop.send(i) for i in range(n)]
        values = [m.get_result(backend=results, block=True, timeout=TIMEOUT_MS) for m in messages]
        if values != list(range(n)):
            raise RuntimeError("W1: wrong results")

    def fire_and_forget(self, n: int) -> None:
        count, key = self.tasks.count, counter.new_key()
        try:
            for i in range(n):
                count.send(i, key)
            counter.wait_count(self.services.redis_url, key, n, TIMEOUT_MS / 1000)
        finally:
            counter.forget(self.services.redis_url, key)

    def latencies(self, n: int) -> list[float]:
        noop, results = self.tasks.noop, self.tasks.results
        seconds = []
        for i in range(n):
            start = time.perf_counter()
            noop.send(i).get_result(backend=results, block=True, timeout=TIMEOUT_MS)
            seconds.append(time.perf_counter() - start)
        return seconds

    def pipelines(self, n: int, length: int) -> None:
        from dramatiq import pipeline

        step, broker = self.tasks.step, self.tasks.broker
        pipes = [
            pipeline(
                [step.message(0), *(step.message() for _ in range(length - 1))], broker=broker
            ).run()
            for _ in range(n)
        ]
        values = [p.get_result(block=True, timeout=TIMEOUT_MS) for p in pipes]
        if values != [length] * n:
            raise RuntimeError("W4: wrong results")

    def funnels(self, n: int, width: int) -> None:
        from dramatiq import group

        noop, gather, broker = self.tasks.noop, self.tasks.gather, self.tasks.broker
        callbacks = []
        for _ in range(n):
            members = [noop.message(i) for i in range(width)]
            callback = gather.message([m.message_id for m in members])
            funnel = group(members, broker=broker)
            funnel.add_completion_callback(callback)
            funnel.run()
            callbacks.append(callback)
        results = self.tasks.results
        values = [c.get_result(backend=results, block=True, timeout=TIMEOUT_MS) for c in callbacks]
        if values != [width * (width - 1) // 2] * n:
            raise RuntimeError("W5: wrong results")

    def plug_chain(self, n: int) -> None:
        from dramatiq import pipeline

        tasks, key = self.tasks, counter.new_key()
        try:
            for i in range(n):
                pipeline(
                    [tasks.hop1.message(i), tasks.hop2.message(), tasks.hop3.message(key=key)],
                    broker=tasks.broker,
                ).run()
            counter.wait_count(self.services.redis_url, key, n, TIMEOUT_MS / 1000)
        finally:
            counter.forget(self.services.redis_url, key)
